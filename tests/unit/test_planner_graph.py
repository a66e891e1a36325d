"""The compute-graph model against what the real Ollama 0.24.0 runner reported.

Measurements: Ollama 0.24.0 built from the module (CPU build here; CUDA 13 backend for sm_90 on an
H100), zero-weight GGUFs with the catalog's Qwen3-30B-A3B tensor shapes and 8 blocks, loaded with
the options shown; the figures are the runner's ``required.CUDA0.Graph`` / ``required.CPU.Graph``
(server log, OLLAMA_DEBUG=1). "hybrid" = blocks 4-7 on the GPU, blocks 0-3 and the output on the
CPU (num_gpu 4); "full" = everything on the GPU; "cpu" = no GPU.
Those tests pass ``op_offload=True``: they pin the measured 0.24.0 CUDA behaviour. The planner's
default (op offload off) is pinned to the operator's A10 log in field-notes.md instead.
"""

import dataclasses

import pytest

from ollama_gpu.planner.catalog import CATALOG
from ollama_gpu.planner.graph import activation_bytes, graph_reserve
from ollama_gpu.planner.units import MIB, format_ollama


def eight_blocks(name):
    entry = CATALOG[name]
    return dataclasses.replace(entry, shape=dataclasses.replace(entry.shape, block_count=8)).geometry()


Q8 = eight_blocks("qwen3:30b-a3b-thinking-2507-q8_0")
Q4 = eight_blocks("qwen3:30b-a3b-thinking-2507-q4_K_M")

FULL = {"gpu_blocks": 8, "output_on_gpu": True}
HYBRID = {"gpu_blocks": 4, "output_on_gpu": False}
CPU = {"gpu_blocks": 0, "output_on_gpu": False}

# (geometry, layout, cells, batch, flash attention, quantized KV, device, measured MiB)
MEASURED = [
    (Q8, FULL, 4096, 512, True, False, "gpu", 154.0),
    (Q8, FULL, 8192, 512, True, False, "gpu", 166.0),
    (Q8, FULL, 16384, 512, True, False, "gpu", 154.0),
    (Q8, FULL, 32768, 512, True, False, "gpu", 222.0),
    (Q8, FULL, 65536, 512, True, False, "gpu", 286.0),
    (Q8, FULL, 32768, 128, True, False, "gpu", 108.0),
    (Q8, FULL, 32768, 256, True, False, "gpu", 146.0),
    (Q8, FULL, 32768, 1024, True, False, "gpu", 374.0),
    (Q8, FULL, 32768, 512, True, True, "gpu", 286.0),  # q8_0 and q4_0 KV both measured 286
    (Q8, HYBRID, 2048, 512, True, False, "gpu", 340.0),
    (Q8, HYBRID, 4096, 512, True, False, "gpu", 350.0),
    (Q8, HYBRID, 8192, 512, True, False, "gpu", 374.0),
    (Q8, HYBRID, 16384, 512, True, False, "gpu", 402.0),
    (Q8, HYBRID, 32768, 512, True, False, "gpu", 450.0),
    (Q8, HYBRID, 65536, 512, True, False, "gpu", 438.0),
    (Q8, HYBRID, 32768, 128, True, False, "gpu", 366.0),
    (Q8, HYBRID, 32768, 256, True, False, "gpu", 394.0),
    (Q8, HYBRID, 32768, 1024, True, False, "gpu", 446.5),
    (Q8, HYBRID, 32768, 512, True, True, "gpu", 484.0),  # q8_0 KV (q4_0: 468)
    (Q4, HYBRID, 8192, 512, True, False, "gpu", 320.0),
    (Q4, HYBRID, 32768, 512, True, False, "gpu", 416.0),
    (Q8, FULL, 8192, 512, False, False, "gpu", 814.0),
    (Q8, FULL, 16384, 512, False, False, "gpu", 1598.0),
    (Q8, FULL, 32768, 512, False, False, "gpu", 3166.0),
    (Q8, HYBRID, 8192, 512, False, False, "gpu", 822.0),
    (Q8, HYBRID, 16384, 512, False, False, "gpu", 1638.0),
    (Q8, HYBRID, 32768, 512, False, False, "gpu", 3254.0),
    (Q8, HYBRID, 32768, 512, True, False, "cpu", 4.0),
    (Q8, HYBRID, 32768, 128, True, False, "cpu", 1.0),
    (Q8, FULL, 32768, 1024, True, False, "cpu", 8.0),
    (Q8, CPU, 2048, 512, True, False, "cpu", 86.0),
    (Q8, CPU, 4096, 512, True, False, "cpu", 88.0),
    (Q8, CPU, 8192, 512, True, False, "cpu", 84.5),
    (Q8, CPU, 16384, 512, True, False, "cpu", 96.0),
    (Q8, CPU, 32768, 512, True, False, "cpu", 112.0),
    (Q8, CPU, 65536, 512, True, False, "cpu", 144.0),
    (Q8, CPU, 32768, 128, True, False, "cpu", 28.0),
    (Q8, CPU, 32768, 1024, True, False, "cpu", 224.0),
    (Q8, CPU, 32768, 512, False, False, "cpu", 2072.0),
    (Q8, CPU, 8192, 512, False, False, "cpu", 536.0),
]


@pytest.mark.parametrize(("geometry", "layout", "cells", "batch", "fa", "quantized", "device", "measured"), MEASURED)
def test_graph_model_tracks_ollama_0_24_0(geometry, layout, cells, batch, fa, quantized, device, measured):
    # op_offload=True: these points pin the measured 0.24.0 CUDA behaviour (H100, sm_90).
    reserve = graph_reserve(
        geometry, batch=batch, kv_cells=cells, flash_attention=fa, kv_cache_quantized=quantized,
        op_offload=True, **layout,
    )
    predicted = getattr(reserve, device) / MIB
    # Fragmentation in ggml's allocator moves the real figure around the formula; the worst
    # measured points are 24% off (hybrid, num_batch 1024) and 23% (full, 16K context), the
    # hybrids at num_batch 512 within 18% (65K context; 32K exact).
    tolerance = 0.30 if batch == 1024 else 0.25
    assert predicted == pytest.approx(measured, rel=tolerance)


A10_FIELD_NOTES_LAYOUT = {
    "batch": 512, "kv_cells": 32768, "flash_attention": True, "kv_cache_quantized": False,
    "gpu_blocks": 30, "output_on_gpu": False,
}


def test_a10_field_notes_layout_graphs():
    """30 of 48 blocks on the GPU at 32K, f16 KV, FA on (the field-notes A10 layout), default model.

    GPU: f16 mask 32768 x 512 x 2 = 32 MiB + FFN activations 80 MiB + CUDA scratch 78 MiB = 190 MiB
    (the log: 190.5 MiB). CPU: the same activations 80 MiB + token embeddings 512 x 2048 x 4 = 4 MiB
    = 84 MiB (the log: 84.0 MiB).
    """
    geometry = CATALOG["qwen3:30b-a3b-thinking-2507-q8_0"].geometry()
    reserve = graph_reserve(geometry, **A10_FIELD_NOTES_LAYOUT)
    assert format_ollama(reserve.cpu) == "84.0 MiB"
    assert reserve.gpu == pytest.approx(190.5 * MIB, rel=0.30)
    assert reserve == type(reserve)(gpu=190 * MIB, cpu=84 * MIB)


def test_a10_field_notes_layout_graphs_with_op_offload():
    """The same layout as the measured 0.24.0 CUDA build runs it (op offload on).

    GPU: f32 mask 32768 x 512 x 4 = 64 MiB + activations 80 MiB + CUDA scratch 78 MiB, plus the
    staging copy of a host-resident ffn_*_exps (204 MiB) less the half of the activations it finds
    freed (40 MiB), plus the host blocks' other inputs and fragmentation (64 MiB) = 450 MiB, what the
    H100 and the H200 lab measured for this layout. CPU: only the token embeddings, 4 MiB.
    """
    geometry = CATALOG["qwen3:30b-a3b-thinking-2507-q8_0"].geometry()
    reserve = graph_reserve(geometry, **A10_FIELD_NOTES_LAYOUT, op_offload=True)
    assert reserve == type(reserve)(gpu=450 * MIB, cpu=4 * MIB)


def test_default_gpu_graph_does_not_depend_on_the_layout():
    # Without op offload no host weight is staged on the GPU, so one block on the GPU reserves
    # what all of them do (32 + 80 + 78 MiB at 32K): placement converges on its first layout.
    # The CPU keeps its 84 MiB while it computes blocks and only embeds (4 MiB) once it computes none.
    graphs = [
        graph_reserve(Q8, batch=512, kv_cells=32768, flash_attention=True, kv_cache_quantized=False, **layout)
        for layout in ({"gpu_blocks": 1, "output_on_gpu": False}, HYBRID, FULL)
    ]
    assert [g.gpu for g in graphs] == [190 * MIB] * 3
    assert [g.cpu for g in graphs] == [84 * MIB, 84 * MIB, 4 * MIB]


def test_activation_term_for_the_moe_ffn():
    # (2048 x 8 + 3 x 768 x 8 + 3 x 2048) floats x 4 B x 512 tokens = 80 MiB.
    assert activation_bytes(Q8, 512) == 80 * MIB


def test_tiny_batches_are_not_offloaded():
    # op_offload=True pins the measured 0.24.0 CUDA behaviour: below 32 tokens ggml keeps
    # host-resident matmuls on the CPU, so no staging copy on the GPU and the CPU graph is the
    # CPU-only one (f16 mask 32768 x 16 x 2 = 1 MiB + activations 2.5 MiB).
    reserve = graph_reserve(
        Q8, batch=16, kv_cells=32768, flash_attention=True, kv_cache_quantized=False, op_offload=True, **HYBRID
    )
    assert reserve.cpu == MIB + activation_bytes(Q8, 16)
    assert reserve.gpu == 4 * 32768 * 16 + activation_bytes(Q8, 16) + 78 * MIB


def test_without_flash_attention_the_cpu_holds_its_blocks_attention_scores():
    # Default mode, A10 layout (30 of 48 blocks on the GPU), 32K cells, batch 512, no flash attention.
    # The CPU computes its 18 blocks itself, so it needs the float32 scores [cells, batch, heads]:
    # 4 x 32768 x 512 x 32 = 2048 MiB, plus query/output/two hidden vectors 4 x 512 x (2x32x128 + 2x2048)
    # = 24 MiB (larger than the 80 MiB FFN phase), plus the batch's embeddings 4 x 512 x 2048 = 4 MiB.
    geometry = CATALOG["qwen3:30b-a3b-thinking-2507-q8_0"].geometry()
    reserve = graph_reserve(geometry, batch=512, kv_cells=32768, flash_attention=False,
                            kv_cache_quantized=False, gpu_blocks=30, output_on_gpu=False)
    assert reserve.cpu == (2048 + 24 + 4) * MIB


def test_a_host_blocks_cache_is_copied_whole_for_its_attention():
    # Op offload, blocks 0-3 in host RAM, 32K cells, batch 512. A host block's flash attention runs
    # on the GPU on copies of its whole K and V cache: with a 1024 MiB cache in block 2 the GPU graph
    # is f32 + f16 mask (64 + 32 MiB) + that copy + query/output/two hidden vectors 4 x 512 x
    # (2x32x128 + 2x2048) = 24 MiB + 30 MiB CUDA scratch. The same cache on GPU block 6 is never
    # copied, so the FFN phase with its staged expert (450 MiB) stands.
    def gpu_graph(big_cache_block):
        caches = [64 * MIB] * 8
        caches[big_cache_block] = 1024 * MIB
        return graph_reserve(Q8, batch=512, kv_cells=32768, flash_attention=True, kv_cache_quantized=False,
                             op_offload=True, block_cache_bytes=caches, **HYBRID).gpu

    assert gpu_graph(2) == (64 + 32 + 1024 + 24 + 30) * MIB
    assert gpu_graph(6) == 450 * MIB
