"""Placement cases worked by hand from the rules in ollama_gpu/planner/placement.py.

Every case uses the default engine model (op_offload off, which reproduces the field-notes A10 log)
unless it says otherwise; the hand arithmetic is in each test's comments and the planner must agree.

Shared figures (Qwen3-30B-A3B, catalog): Q8_0 block 662,848,512 B (0.617 GiB); output layer
330,620,928; token_embd 330,612,736 (always on the CPU). Q4_K_M: blocks of 403,596,288 B on the
"more bits" blocks (0-5, 42-47 and 8, 11, ..., 41) and 351,421,440 B on the others; output
255,260,672; token_embd 175,030,272.
KV cells = roundUp(num_ctx x num_parallel, 256). KV per layer = 2 x 128 x 4 x cells x bytes per
value (f16 2, q8_0 34/32, q4_0 18/32) = 2048 / 1088 / 576 B per cell: at 32768 cells 67,108,864
(f16), 35,651,584 (q8_0), 18,874,368 (q4_0).
Layer space = free - 457 MiB (479,199,232) - overhead - GPU graph. 22.5 GiB = 24,159,191,040;
31.7 GiB rounds to 34,037,615,821; 1 GiB = 1,073,741,824.
GPU graph by default (graph.py), num_batch 512, flash attention on: f16 KQ mask 2 x cells x 512
+ FFN activations 80 MiB (83,886,080) + CUDA scratch 78 MiB (81,788,928), plus 2 x 2 x 128 x 4 x
cells (2048 B per cell) when the KV cache is quantized: 1024 x cells + 165,675,008 for f16 KV,
3072 x cells + 165,675,008 for q8_0/q4_0. It does not depend on how many blocks are on the GPU, so
the first layout (computed with the graph of "everything on the GPU") is already the final one.
CPU graph by default: activations + token embeddings of the batch (80 + 4 = 84 MiB) while blocks
stay in host RAM, the 4 MiB of embeddings alone when every block is on the GPU.
"""

import pytest

from ollama_gpu.planner.catalog import catalog_geometry
from ollama_gpu.planner.layout import Gpu, converge, layer_sum
from ollama_gpu.planner.placement import place
from ollama_gpu.planner.units import GIB, MIB, format_ollama

Q8 = catalog_geometry("qwen3:30b-a3b-thinking-2507-q8_0")
Q4 = catalog_geometry("qwen3:30b-a3b-thinking-2507-q4_K_M")
A10_FREE = round(22.5 * GIB)
V100_FREE = round(31.7 * GIB)
Q8_BLOCK = 662_848_512
Q8_HOST_LAYERS = 330_612_736 + 330_620_928  # token_embd + output layer


def plan(geometry=Q8, *, free=A10_FREE, overhead=GIB, ctx=32768, kv="f16", fa=True, parallel=1, op_offload=False):
    return place(
        geometry, gpu_free_vram=free, gpu_overhead=overhead, num_ctx=ctx, kv_cache_type=kv,
        flash_attention=fa, num_parallel=parallel, op_offload=op_offload,
    )


def test_a10_field_notes_case():
    # Graph 32 + 80 + 78 = 190 MiB (199,229,440): space 24,159,191,040 - 479,199,232 - 1,073,741,824
    # - 199,229,440 = 22,407,020,544 (20.87 GiB). Block cost 662,848,512 + 67,108,864 = 729,957,376;
    # all 48 blocks (35,037,954,048) do not fit, so the output stays on the CPU and blocks alone
    # pack 22,407,020,544 / 729,957,376 = 30.70 -> 30.
    p = plan()
    assert (p.gpu_blocks, p.block_count, p.output_on_gpu, p.offloaded_layers) == (30, 48, False, 30)
    assert p.gpu_layer_space == 22_407_020_544
    assert p.weights_gpu == 30 * Q8_BLOCK  # 19,885,455,360 = 18.52 GiB
    assert p.weights_cpu == 18 * Q8_BLOCK + Q8_HOST_LAYERS  # 12,592,506,880 = 11.73 GiB
    assert (p.kv_gpu, p.kv_cpu) == (30 * 67_108_864, 18 * 67_108_864)  # 1.875 / 1.125 GiB
    assert (p.graph_gpu, p.graph_cpu) == (190 * MIB, 84 * MIB)
    # 32,477,962,240 weights + 3,221,225,472 KV + 199,229,440 + 88,080,384 graphs = 35,986,497,536.
    assert p.total == 35_986_497_536
    # As Ollama prints them: the field-notes A10 log (its GPU graph is 190.5 MiB, the model 190.0).
    printed = [format_ollama(v) for v in (p.weights_gpu, p.weights_cpu, p.kv_gpu, p.kv_cpu, p.graph_cpu, p.total)]
    assert printed == ["18.5 GiB", "11.7 GiB", "1.9 GiB", "1.1 GiB", "84.0 MiB", "33.5 GiB"]
    assert p.graph_gpu == pytest.approx(190.5 * MIB, rel=0.30)


def test_a10_field_notes_case_with_op_offload():
    # The 0.24.0 CUDA behaviour measured on an H100 (graph.py): the mask reaches the GPU as f32.
    # Pass 1 (everything on the GPU, no host block to stage): 64 + 80 + 78 = 222 MiB, space
    # 22,373,466,112 -> 30.65 -> 30 blocks. Pass 2 (30 blocks, graph + the staging copy of a host
    # ffn_*_exps as graph.py sizes it, 204 - 40 + 64 = 228 MiB: 450 MiB, what the lab measured):
    # 22,134,390,784 -> 30.32 -> 30: the same layout, weights and KV.
    default, offloading = plan(), plan(op_offload=True)
    assert (offloading.gpu_blocks, offloading.output_on_gpu) == (30, False)
    assert offloading.gpu_layer_space == 22_134_390_784
    for part in ("weights_gpu", "weights_cpu", "kv_gpu", "kv_cpu"):
        assert getattr(offloading, part) == getattr(default, part)
    assert (offloading.graph_gpu, offloading.graph_cpu) == (450 * MIB, 4 * MIB)
    # 32,477,962,240 + 3,221,225,472 + 471,859,200 + 4,194,304 = 36,175,241,216 (33.69 GiB).
    assert format_ollama(offloading.total) == "33.7 GiB"


def test_a10_q8_0_kv_cache():
    # Block cost 662,848,512 + 35,651,584 = 698,500,096. Graph 32 + 64 + 80 + 78 = 254 MiB
    # (266,338,304): space 22,339,911,680 (20.81 GiB) -> 31.98 -> 31 (32 blocks need 22,352,003,072).
    p = plan(kv="q8_0")
    assert (p.gpu_blocks, p.output_on_gpu) == (31, False)
    assert (p.kv_gpu, p.kv_cpu) == (31 * 35_651_584, 17 * 35_651_584)
    assert [format_ollama(v) for v in (p.kv_gpu, p.kv_cpu)] == ["1.0 GiB", "578.0 MiB"]
    assert p.graph_gpu == 254 * MIB


def test_a10_q4_0_kv_cache():
    # Block cost 662,848,512 + 18,874,368 = 681,722,880; graph 254 MiB as for q8_0: space
    # 22,339,911,680 -> 32.77 -> 32.
    p = plan(kv="q4_0")
    assert (p.gpu_blocks, p.kv_gpu, p.graph_gpu) == (32, 32 * 18_874_368, 254 * MIB)


def test_quantized_kv_without_flash_attention_falls_back_to_f16():
    # q8_0 dropped to f16. Graph = max(attention: f16 mask 32 MiB + f32 scores and their f16 copy
    # 6 x 32768 x 512 x 32 = 3072 MiB + 30 MiB = 3134 MiB (3,286,237,184), FFN phase 190 MiB):
    # space 19,320,012,800 (17.99 GiB) / 729,957,376 = 26.47 -> 26.
    p = plan(kv="q8_0", fa=False)
    assert p.kv_cache_type == "f16"
    assert any("drops it to f16" in w for w in p.warnings)
    assert (p.gpu_blocks, p.graph_gpu) == (26, 3134 * MIB)


def test_a10_q4_k_m_fits_entirely():
    # Space 22,407,020,544 as in the field-notes case. 48 blocks 18,120,425,472 + KV 48 x 67,108,864
    # (3,221,225,472) + output 255,260,672 = 21,596,911,616 (20.11 GiB) fits: all 49 layers.
    p = plan(Q4)
    assert (p.gpu_blocks, p.output_on_gpu, p.offloaded_layers) == (48, True, 49)
    assert (p.weights_gpu, p.weights_cpu) == (18_375_686_144, 175_030_272)  # token_embd stays on CPU
    assert (p.kv_cpu, p.graph_gpu, p.graph_cpu) == (0, 190 * MIB, 4 * MIB)


def test_v100_q8_0():
    # Space 34,037,615,821 - 479,199,232 - 1,073,741,824 - 199,229,440 = 32,285,445,325 (30.07 GiB)
    # / 729,957,376 = 44.23 -> 44 blocks; the output would need all 48 first.
    p = plan(free=V100_FREE)
    assert (p.gpu_blocks, p.output_on_gpu, p.gpu_layer_space) == (44, False, 32_285_445_325)
    assert p.weights_cpu == 4 * Q8_BLOCK + Q8_HOST_LAYERS  # 3,312,627,712 = 3.09 GiB


def test_v100_q8_0_converges_downward_with_op_offload():
    # The measured 0.24.0 CUDA behaviour, where the GPU graph depends on the layout.
    # Pass 1 (graph 222 MiB): space 32,251,890,893 -> 44.18 -> 44 blocks.
    # Pass 2 (44 blocks, graph 450 MiB): 32,012,815,565 -> 43.86 -> 43, fewer, so taken.
    # Pass 3 (43 blocks): 43 again: converged.
    p = plan(free=V100_FREE, op_offload=True)
    assert (p.gpu_blocks, p.output_on_gpu) == (43, False)
    assert p.weights_cpu == 5 * Q8_BLOCK + Q8_HOST_LAYERS


def test_v100_q8_0_kv_cache():
    # Graph 254 MiB: space 32,218,336,461 (30.01 GiB) / 698,500,096 = 46.13 -> 46.
    p = plan(free=V100_FREE, kv="q8_0")
    assert (p.gpu_blocks, p.output_on_gpu) == (46, False)


def test_v100_q4_k_m_fits_entirely():
    # Space 32,285,445,325 > the 21,596,911,616 that all of Q4_K_M with its KV needs.
    p = plan(Q4, free=V100_FREE)
    assert (p.offloaded_layers, p.weights_cpu) == (49, 175_030_272)


def test_a10_8k_context_without_overhead():
    # 8192 cells: KV 16,777,216 per layer, cost 679,625,728; graph 8 + 80 + 78 = 166 MiB
    # (174,063,616): space 24,159,191,040 - 479,199,232 - 174,063,616 = 23,505,928,192 (21.89 GiB)
    # -> 34.59 -> 34.
    p = plan(ctx=8192, overhead=0)
    assert (p.kv_cells, p.gpu_blocks, p.graph_gpu) == (8192, 34, 166 * MIB)
    assert p.kv_gpu == 34 * 16_777_216


def test_16_gib_gpu_with_512_mib_overhead_at_16k():
    # 16384 cells: KV 33,554,432 per layer, cost 696,402,944; graph 16 + 80 + 78 = 174 MiB
    # (182,452,224): space 17,179,869,184 - 479,199,232 - 536,870,912 - 182,452,224 =
    # 15,981,346,816 (14.88 GiB) -> 22.95 -> 22 (23 blocks need 16,017,267,712).
    p = plan(free=16 * GIB, overhead=512 * MIB, ctx=16384)
    assert (p.kv_cells, p.gpu_blocks, p.graph_gpu) == (16384, 22, 174 * MIB)
    assert p.gpu_layer_space == 15_981_346_816


def test_40_gib_gpu_with_2_gib_overhead_holds_q8_0_at_64k():
    # 65536 cells of q8_0: KV 71,303,168 per layer; graph 64 + 128 + 80 + 78 = 350 MiB
    # (367,001,600): space 42,949,672,960 - 479,199,232 - 2,147,483,648 - 367,001,600 =
    # 39,955,988,480 (37.21 GiB). All 49 layers: 48 x 734,151,680 + 330,620,928 = 35,569,901,568
    # (33.13 GiB) fit, leaving only token_embd and the embeddings' 4 MiB graph on the CPU.
    p = plan(free=40 * GIB, overhead=2 * GIB, ctx=65536, kv="q8_0")
    assert (p.gpu_blocks, p.output_on_gpu, p.kv_cells) == (48, True, 65536)
    assert (p.weights_cpu, p.kv_cpu, p.graph_cpu, p.graph_gpu) == (330_612_736, 0, 4 * MIB, 350 * MIB)
    assert p.gpu_total == 35_569_901_568 + 367_001_600  # 35,936,903,168 = 33.47 GiB


def test_output_stays_on_the_cpu_unless_everything_fits():
    # 33.5 GiB (35,970,351,104), no overhead: space 35,970,351,104 - 479,199,232 - 199,229,440 =
    # 35,291,922,432 (32.87 GiB). Blocks + output = 35,368,574,976 (32.94 GiB) do not fit; the 48
    # blocks alone (35,037,954,048 = 32.63 GiB) do: 48/49 layers, output layer on the CPU.
    p = plan(free=round(33.5 * GIB), overhead=0)
    assert (p.gpu_blocks, p.output_on_gpu, p.offloaded_layers) == (48, False, 48)
    assert (p.weights_cpu, p.graph_cpu) == (Q8_HOST_LAYERS, 4 * MIB)


def test_q4_k_m_on_16_gib_packs_unequal_blocks_from_the_end():
    # Space 17,179,869,184 - 479,199,232 - 536,870,912 - 199,229,440 = 15,964,569,600 (14.87 GiB).
    # Costs with KV: 470,705,152 ("more bits" blocks), 418,530,304 (others). From block 47 down:
    # 47..41 are big (3,294,936,064), then (small, small, big) triples of 1,307,765,760: 9 of them
    # (blocks 40..14, 11,769,891,840) leave 899,741,696, enough for small blocks 13 and 12
    # (62,681,088 left) but not big block 11: 36 blocks (16 big, 20 small). With the output
    # (255,260,672) packed first only 35 blocks fit, so the output stays on the CPU.
    p = plan(Q4, free=16 * GIB, overhead=512 * MIB)
    assert (p.gpu_blocks, p.output_on_gpu) == (36, False)
    assert p.weights_gpu == 16 * 403_596_288 + 20 * 351_421_440  # 13,485,969,408 = 12.56 GiB
    assert p.kv_gpu == 36 * 67_108_864


def test_parallel_requests_multiply_the_kv_cache():
    # 2 x 16384 = 32768 cells: the same layout as the field-notes case.
    single, doubled = plan(), plan(ctx=16384, parallel=2)
    assert (doubled.kv_cells, doubled.gpu_blocks, doubled.kv_gpu, doubled.graph_gpu) == (
        single.kv_cells, single.gpu_blocks, single.kv_gpu, single.graph_gpu
    )
    # 2 x 32768 = 65536 cells (as num_ctx 64K alone): KV 134,217,728 per layer, cost 797,066,240;
    # graph 64 + 80 + 78 = 222 MiB: space 22,373,466,112 (20.84 GiB) -> 28.07 -> 28.
    p = plan(parallel=2)
    assert (p.kv_cells, p.gpu_blocks, p.graph_gpu) == (65536, 28, 222 * MIB)
    assert plan(ctx=65536).gpu_blocks == 28


def test_four_parallel_requests_with_q4_0_kv():
    # 4 x 16384 = 65536 cells of q4_0: KV 37,748,736 per layer, cost 700,597,248; graph 64 + 128 +
    # 80 + 78 = 350 MiB (367,001,600): space 22,239,248,384 (20.71 GiB) -> 31.74 -> 31.
    p = plan(ctx=16384, parallel=4, kv="q4_0")
    assert (p.kv_cells, p.gpu_blocks, p.graph_gpu) == (65536, 31, 350 * MIB)
    assert p.kv_cpu == 17 * 37_748_736


def test_small_gpu():
    # 8 GiB free, no overhead: 8,589,934,592 - 479,199,232 - 199,229,440 = 7,911,505,920 -> 10.84 -> 10.
    p = plan(free=8 * GIB, overhead=0)
    assert p.gpu_blocks == 10


def test_context_is_padded_to_256_cells():
    # 1000 -> 1024 cells (CachePadding 256, with or without flash attention in 0.24.0); KV
    # 2,097,152 per layer, cost 664,945,664; graph 1 + 80 + 78 = 159 MiB: space 22,439,526,400 ->
    # 33.75 -> 33.
    p = plan(ctx=1000)
    assert (p.kv_cells, p.num_batch, p.gpu_blocks, p.graph_gpu) == (1024, 512, 33, 159 * MIB)
    # Without flash attention too (32-cell padding would give 1120 here; 0.24.0 pads to 256).
    assert plan(ctx=1100, fa=False).kv_cells == 1280


def test_batch_is_capped_at_the_context():
    assert plan(ctx=200).num_batch == 200


def test_context_above_training_length_is_cut():
    p = plan(ctx=300_000)
    assert (p.num_ctx, p.kv_cells) == (262_144, 262_144)
    assert any("exceeds the model's context" in w for w in p.warnings)


def test_nothing_fits_leaves_the_gpu_empty():
    p = plan(free=400 * MIB, overhead=0)
    assert (p.offloaded_layers, p.weights_gpu, p.graph_gpu, p.gpu_layer_space) == (0, 0, 0, 0)
    assert p.weights_cpu == Q8.weight_bytes


def test_cpu_only():
    # f16 mask 32768 x 512 x 2 = 32 MiB + activations 80 MiB.
    p = plan(free=None)
    assert (p.gpu_blocks, p.gpu_layer_space) == (0, None)
    assert (p.kv_cpu, p.graph_cpu) == (48 * 67_108_864, 112 * MIB)


def test_exploring_intermediate_layer_counts():
    # A layout whose own graph frees room: 4 blocks proposed after 2 were placed, so Ollama tries
    # 3 forced layers, verifies that its own measurement still allows 3, and keeps it.
    # Four 1-byte blocks and a 1-byte output layer on a 10-byte card; the graph each layout reports
    # leaves 2 bytes for layers with everything on the GPU, 4 with two blocks, 3 with three.
    graph_for_layers = {5: 8, 2: 6, 3: 7}
    layout = converge(
        [1, 1, 1, 1, 1], [Gpu(0, 10)], reserve=0,
        graphs_of=lambda layout: {0: graph_for_layers[layer_sum(layout)]}, fits=lambda layout: True,
    )
    assert layout == ((0, (1, 2, 3)),)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kv": "q5_0"}, "kv cache type"),
        ({"ctx": 0}, "num_ctx"),
        ({"parallel": 0}, "num_parallel"),
        ({"overhead": -1}, "negative"),
    ],
)
def test_invalid_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plan(**kwargs)
