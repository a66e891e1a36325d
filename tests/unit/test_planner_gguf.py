"""GGUF and /api/show paths, on tiny models written at test time with the gguf package."""

import gguf
import numpy as np
import pytest

from ollama_gpu.planner.catalog import CATALOG
from ollama_gpu.planner.gguf_geometry import compare_with_model_info, geometry_from_gguf, geometry_from_model_info
from ollama_gpu.planner.placement import place

F32_TENSOR = np.float32


def write_gguf(path, arch, metadata, tensors, vocab=100):
    """tensors: (name, ggml type name, ggml shape); values are zeros of the right byte size."""
    writer = gguf.GGUFWriter(str(path), arch)
    for key, value in metadata.items():
        writer.add_uint32(f"{arch}.{key}", value)
    if vocab:
        writer.add_token_list([f"t{i}" for i in range(vocab)])
    for name, ggml_type, shape in tensors:
        numpy_shape = tuple(reversed(shape))
        if ggml_type == "F32":
            writer.add_tensor(name, np.zeros(numpy_shape, dtype=F32_TENSOR))
        else:
            quant = gguf.GGMLQuantizationType[ggml_type]
            values_per_block, bytes_per_block = gguf.GGML_QUANT_SIZES[quant]
            byte_shape = (*numpy_shape[:-1], numpy_shape[-1] // values_per_block * bytes_per_block)
            writer.add_tensor(name, np.zeros(byte_shape, dtype=np.uint8), raw_dtype=quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


LLAMA_META = {"block_count": 3, "context_length": 256, "embedding_length": 64, "feed_forward_length": 128,
              "attention.head_count": 4, "attention.head_count_kv": 2}
MOE_META = {"block_count": 2, "context_length": 512, "embedding_length": 64, "attention.head_count": 4,
            "attention.head_count_kv": 2, "attention.key_length": 16, "expert_count": 8,
            "expert_used_count": 2, "expert_feed_forward_length": 32}


@pytest.fixture
def tiny_llama(tmp_path):
    """3 llama blocks, F32, no output tensor (tied to token_embd), rope_freqs shared by every block."""
    tensors = [("token_embd.weight", "F32", (64, 100)), ("rope_freqs.weight", "F32", (8,))]
    for b in range(3):
        tensors += [
            (f"blk.{b}.attn_norm.weight", "F32", (64,)), (f"blk.{b}.attn_q.weight", "F32", (64, 64)),
            (f"blk.{b}.attn_k.weight", "F32", (64, 32)), (f"blk.{b}.attn_v.weight", "F32", (64, 32)),
            (f"blk.{b}.attn_output.weight", "F32", (64, 64)), (f"blk.{b}.ffn_norm.weight", "F32", (64,)),
            (f"blk.{b}.ffn_gate.weight", "F32", (64, 128)), (f"blk.{b}.ffn_up.weight", "F32", (64, 128)),
            (f"blk.{b}.ffn_down.weight", "F32", (128, 64)),
        ]
    tensors.append(("output_norm.weight", "F32", (64,)))
    return write_gguf(tmp_path / "llama.gguf", "llama", LLAMA_META, tensors)


def moe_tensors():
    tensors = [("token_embd.weight", "Q8_0", (64, 100))]
    for b in range(2):
        tensors += [
            (f"blk.{b}.attn_norm.weight", "F32", (64,)), (f"blk.{b}.attn_q.weight", "F32", (64, 64)),
            (f"blk.{b}.attn_k.weight", "F32", (64, 32)), (f"blk.{b}.attn_v.weight", "F32", (64, 32)),
            (f"blk.{b}.attn_output.weight", "F32", (64, 64)), (f"blk.{b}.attn_q_norm.weight", "F32", (16,)),
            (f"blk.{b}.attn_k_norm.weight", "F32", (16,)), (f"blk.{b}.ffn_norm.weight", "F32", (64,)),
            (f"blk.{b}.ffn_gate_inp.weight", "F32", (64, 8)),
            (f"blk.{b}.ffn_gate_exps.weight", "Q8_0", (64, 32, 8)),
            (f"blk.{b}.ffn_up_exps.weight", "Q8_0", (64, 32, 8)),
            (f"blk.{b}.ffn_down_exps.weight", "Q8_0", (32, 64, 8)),
        ]
    return tensors + [("output_norm.weight", "F32", (64,)), ("output.weight", "Q8_0", (64, 100))]


@pytest.fixture
def tiny_moe(tmp_path):
    return write_gguf(tmp_path / "moe.gguf", "qwen3moe", MOE_META, moe_tensors())


def test_llama_geometry(tiny_llama):
    g = geometry_from_gguf(tiny_llama)
    assert (g.architecture, g.block_count, g.head_count_kv, g.vocab_size, g.context_length) == ("llama", 3, 2, 100, 256)
    assert g.head_dim == 16  # no key_length: embedding 64 / 4 heads
    # norms 2 x 256 + q/o 2 x 16,384 + k/v 2 x 8,192 + FFN 3 x 32,768 + rope_freqs copy 32.
    assert g.block_weight_bytes == (148_000,) * 3
    assert g.block_active_bytes == g.block_weight_bytes
    assert g.token_embd_bytes == 25_600
    assert g.output_bytes == 256 + 25_600  # output_norm plus the tied copy of token_embd
    assert g.file_size == tiny_llama.stat().st_size


def test_moe_geometry_counts_routed_experts_only(tiny_moe):
    g = geometry_from_gguf(tiny_moe, name="tiny-moe")
    assert (g.name, g.is_moe, g.expert_used_count, g.expert_ff_length) == ("tiny-moe", True, 2, 32)
    # Dense part 51,840 (attention 49,152, norms 640, router 2,048); experts 3 x 17,408 in Q8_0
    # (68 or 34 B per row x 256 or 512 rows).
    assert g.block_weight_bytes == (104_064,) * 2
    assert g.block_active_bytes == (51_840 + 52_224 * 2 // 8,) * 2
    assert g.block_largest_tensor_bytes == (17_408,) * 2
    assert (g.token_embd_bytes, g.output_bytes) == (6_800, 6_800 + 256)


def test_llama_runs_on_the_llama_cpp_runner_estimate(tiny_llama):
    # llama is not Ollama-engine-required, so llamaServer.Load places it from fs/ggml GraphSize.
    # num_ctx 256, batch min(512, 256) = 256. KV per layer 256 x (16 + 16) x 2 heads x 2 B = 32,768.
    # GroupLayers sizes: blk.N 147,968 (rope_freqs is its own group), output = output_norm 256 +
    # token_embd 25,600 (no output tensor). llama graphs with E 64, heads 4, kv heads 2, vocab 100:
    # full max(4x256x(1+256+256x5), 4x256x164) = 1,573,888; partial 4x256x64 = 65,536 +
    # max(4x256x321 + 64x64x9/16 + 4x256x(256x4 + 16x2), 4x256x164 + 64x100x105/128)
    # = 65,536 + 1,412,352 = 1,477,888.
    # Every card first loses blk.0 + its KV (180,736). Pass 1 (no graph yet) fits everything on the
    # GPU, so pass 2 reserves max(partial, full): 400,000 left for layers holds the output and two
    # blocks but not three, so assignLayers keeps the blocks and drops the output: 2 blocks.
    g = geometry_from_gguf(tiny_llama)
    free = 479_199_232 + 1_573_888 + 180_736 + 400_000
    p = place(g, gpu_free_vram=free, gpu_overhead=0, num_ctx=256, kv_cache_type="f16", flash_attention=True, num_parallel=1)
    assert (p.engine, p.gpu_blocks, p.block_count, p.output_on_gpu, p.offloaded_layers) == ("llama.cpp", 2, 3, False, 2)
    assert (p.weights_gpu, p.weights_cpu) == (2 * 147_968, 147_968 + 25_856)  # InputWeights are not counted
    assert (p.kv_gpu, p.kv_cpu, p.graph_gpu, p.graph_cpu) == (65_536, 32_768, 1_477_888, 0)
    assert any("llama.cpp runner" in w for w in p.warnings)


def test_llama_without_tokens_is_refused(tmp_path):
    from ollama_gpu.planner.placement import UnpredictableModel

    meta = {**LLAMA_META, "block_count": 1}
    path = write_gguf(tmp_path / "no-vocab.gguf", "llama", meta, [("blk.0.attn_q.weight", "F32", (64, 64))], vocab=0)
    with pytest.raises(UnpredictableModel, match="no tokenizer.ggml.tokens"):
        place(geometry_from_gguf(path), gpu_free_vram=None, gpu_overhead=0, num_ctx=256, kv_cache_type="f16",
              flash_attention=True, num_parallel=1)


def test_moe_fits_whole_on_a_big_gpu(tiny_moe):
    g = geometry_from_gguf(tiny_moe)
    p = place(g, gpu_free_vram=2**30, gpu_overhead=0, num_ctx=512, kv_cache_type="f16", flash_attention=True, num_parallel=1)
    assert (p.gpu_blocks, p.output_on_gpu, p.offloaded_layers) == (2, True, 3)
    assert (p.weights_cpu, p.kv_cpu) == (6_800, 0)
    assert p.warnings == ()


def test_quantized_kv_needs_whole_blocks_per_head(tiny_moe):
    # ggml cannot store a 16-value head in 32-value q8_0 blocks.
    with pytest.raises(ValueError, match="head_dim 16"):
        place(geometry_from_gguf(tiny_moe), gpu_free_vram=None, gpu_overhead=0, num_ctx=512,
              kv_cache_type="q8_0", flash_attention=True, num_parallel=1)


def model_info_for(arch, metadata):
    return {"general.architecture": arch, **{f"{arch}.{key}": value for key, value in metadata.items()}}


def test_model_info_path_matches_the_file(tiny_moe):
    from_file = geometry_from_gguf(tiny_moe, name="m")
    shown = [{"name": n, "type": t, "shape": list(s)} for n, t, s in moe_tensors()]
    from_show = geometry_from_model_info(model_info_for("qwen3moe", MOE_META), shown, name="m")
    assert from_show.block_weight_bytes == from_file.block_weight_bytes
    assert from_show.output_bytes == from_file.output_bytes
    assert compare_with_model_info(from_file, model_info_for("qwen3moe", MOE_META), shown) == []


def test_compare_reports_what_differs():
    entry = CATALOG["qwen3:30b-a3b-thinking-2507-q8_0"]
    shape = entry.shape
    info = model_info_for("qwen3moe", {
        "block_count": 48, "context_length": shape.context_length, "embedding_length": 2048,
        "attention.head_count": 32, "attention.head_count_kv": 4, "attention.key_length": 128,
        "expert_count": 128, "expert_used_count": 8, "expert_feed_forward_length": 768,
    })
    shown = [{"name": t.name, "type": t.ggml_type, "shape": list(t.shape)} for t in entry.tensors()]
    assert compare_with_model_info(entry.geometry(), info) == []
    assert compare_with_model_info(entry.geometry(), info, shown) == []
    info["qwen3moe.expert_used_count"] = 4
    shown[-1] = {**shown[-1], "type": "Q6_K"}  # output.weight
    assert compare_with_model_info(entry.geometry(), info, shown) == [
        "expert_used_count: planned 8, Ollama reports 4",
        "output_bytes: planned 330620928 bytes, Ollama reports 255260672",
    ]
    assert compare_with_model_info(entry.geometry(), {}) == ["metadata has no general.architecture"]


def test_llama_cpp_runner_on_two_gpus_keeps_the_first_cards_graph(tiny_llama):
    # llamaServer.Load with two equal cards, each with X = 1,873,888 B left after the 457 MiB
    # minimum and the blk.0 buffer (180,736). Pass 1 (no graph yet): all 4 layers (568,064) fit the
    # first card alone, so it gets max(partial, full) = 1,573,888 of graph. Pass 2: the first card
    # now has 300,000 left, too little for everything, so findBestFit takes both cards and its
    # smallest capacity factor that still places all 4 layers puts them all on the last card (GPU1):
    # still one entry, so the loop ends. The final graph is "full" (every layer on a GPU) for GPU1,
    # and GPU0 keeps the graph it was given in pass 1 although it holds nothing: Ollama logs it.
    g = geometry_from_gguf(tiny_llama)
    free = 479_199_232 + 180_736 + 1_573_888 + 300_000
    p = place(g, gpu_free_vram=None, gpu_free_vrams=[free, free], gpu_overhead=0, num_ctx=256, kv_cache_type="f16",
              flash_attention=True, num_parallel=1)
    assert [(s.index, s.blocks, s.output, s.graph) for s in p.gpus] == [
        (0, (), False, 1_573_888), (1, (0, 1, 2), True, 1_573_888)]
    assert p.weights_cpu == 0  # token_embd is not counted on the llama.cpp runner


def test_every_truncation_of_a_gguf_gives_a_geometry_or_says_what_is_wrong(tiny_llama, tmp_path):
    """Cut the file every few bytes through its header and metadata, and at a few points in its data."""
    whole = tiny_llama.read_bytes()
    data_offset = gguf.GGUFReader(tiny_llama).data_offset
    cut = tmp_path / "cut.gguf"
    lengths = [*range(0, data_offset, 5), data_offset - 1, (data_offset + len(whole)) // 2, len(whole) - 1]
    refused = 0
    for length in lengths:
        cut.write_bytes(whole[:length])
        try:
            geometry_from_gguf(cut)
        except ValueError as error:
            assert str(error), length
            refused += 1
    assert refused >= len(range(0, data_offset, 5))


@pytest.mark.parametrize(
    "content, says",
    [
        pytest.param(b"", "not a GGUF file", id="empty"),
        pytest.param(b"config:\n  ollama-gpu:profile: a10\n", "not a GGUF file", id="yaml"),
        pytest.param(b"GGUF", "truncated or damaged", id="magic-only"),
        pytest.param(b"GGUF" + b"\xff" * 60, "truncated or damaged", id="garbage-after-magic"),
    ],
)
def test_a_file_that_is_not_a_whole_gguf_is_named_as_such(tmp_path, content, says):
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=says):
        geometry_from_gguf(path)


def test_a_directory_is_not_a_gguf(tmp_path):
    with pytest.raises(ValueError, match="not a regular file"):
        geometry_from_gguf(tmp_path)
