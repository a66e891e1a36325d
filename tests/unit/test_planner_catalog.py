"""The catalog derives sizes from shapes and ggml block layouts; these pin the published figures."""

import gguf
import pytest

from ollama_gpu.planner.catalog import CATALOG, alternatives, catalog_geometry
from ollama_gpu.planner.geometry import GGML_TYPE_LAYOUT, TensorInfo

Q8 = "qwen3:30b-a3b-thinking-2507-q8_0"
Q4 = "qwen3:30b-a3b-thinking-2507-q4_K_M"


def test_q8_0_block_matches_ollama_facts():
    geometry = catalog_geometry(Q8)
    # attn_q/attn_output 2048x4096 and attn_k/attn_v 2048x512 at 34 B per 32 values: 20,054,016;
    # norms 2x8192 + 2x512 = 17,408 and the F32 router 2048x128x4 = 1,048,576;
    # three 2048x768x128 expert tensors at 34/32: 3 x 213,909,504 = 641,728,512.
    assert geometry.block_weight_bytes == (662_848_512,) * 48
    assert geometry.block_largest_tensor_bytes == (213_909_504,) * 48


def test_q8_0_embedding_output_and_file_size():
    geometry = catalog_geometry(Q8)
    # 151936 rows of 2048 values = 64 blocks x 34 B = 2176 B per row -> 330,612,736. ollama-facts.md
    # says 330,608,640, which is not a whole number of rows; the real 0.24.0 runner reported
    # InputWeights=330612736 for this shape (measured), so the catalog keeps the computed value.
    assert geometry.token_embd_bytes == 330_612_736
    assert geometry.output_bytes == 330_612_736 + 8192  # plus output_norm
    assert round(geometry.file_size / 1e9, 2) == 32.48
    assert round(geometry.active_bytes_per_token / 1e9, 2) == 3.27


def test_q4_k_m_total_and_active_bytes():
    geometry = catalog_geometry(Q4)
    # 24 plain blocks of 351,421,440 and 24 "more bits" blocks (attn_v and ffn_down_exps in Q6_K)
    # of 403,596,288, token_embd Q4_K 175,030,272, output Q6_K 255,252,480 + norm 8192.
    assert sorted(set(geometry.block_weight_bytes)) == [351_421_440, 403_596_288]
    assert geometry.block_weight_bytes.count(403_596_288) == 24
    assert geometry.weight_bytes == 18_550_716_416
    assert round(geometry.weight_bytes / 1e9, 2) == 18.55
    assert round(geometry.active_bytes_per_token / 1e9, 2) == 1.92


def test_q4_k_m_more_bits_blocks_follow_llama_cpp():
    # use_more_bits(i, 48): i < 6, i >= 42, or (i - 6) % 3 == 2.
    geometry = catalog_geometry(Q4)
    heavy = [i for i, size in enumerate(geometry.block_weight_bytes) if size == 403_596_288]
    assert heavy == [0, 1, 2, 3, 4, 5, *range(8, 42, 3), 42, 43, 44, 45, 46, 47]


def test_moe_active_bytes_count_only_routed_experts():
    geometry = catalog_geometry(Q8)
    # Non-expert tensors 21,120,000 + 8/128 of 641,728,512 = 40,108,032.
    assert geometry.block_active_bytes[0] == 21_120_000 + 40_108_032


def test_tinyllama_q4_0_size():
    geometry = catalog_geometry("tinyllama:1.1b")
    # 22 blocks of 44,040,192 values at 18/32 B plus norms, token_embd Q4_0, output Q6_K.
    assert geometry.weight_bytes == 635_990_016
    assert not geometry.is_moe


def test_catalog_lookup_errors_name_the_models():
    with pytest.raises(KeyError, match="built-in models"):
        catalog_geometry("qwen3:unknown")


def test_alternatives_are_the_other_builds_of_the_same_model():
    assert [g.name for g in alternatives(Q8)] == [Q4]
    assert alternatives("tinyllama:1.1b") == ()
    assert set(CATALOG) >= {Q8, Q4}


def test_block_layouts_agree_with_the_gguf_package():
    for name, layout in GGML_TYPE_LAYOUT.items():
        if name == "Q8_1":
            # ggml-common.h: static_assert(sizeof(block_q8_1) == 2*sizeof(ggml_half) + QK8_1), 36 B;
            # gguf-py 0.19 still lists the old float pair (40 B).
            assert layout == (32, 36)
            continue
        assert gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]] == layout, name


def test_tensor_rows_must_hold_whole_blocks():
    with pytest.raises(ValueError, match="whole number"):
        _ = TensorInfo("blk.0.x.weight", "Q4_K", (100, 2)).nbytes
    with pytest.raises(ValueError, match="Q9_X is not a type Ollama 0.24.0.s ggml can load"):
        _ = TensorInfo("blk.0.x.weight", "Q9_X", (32,)).nbytes
