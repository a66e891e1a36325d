"""Each architecture family, from a real model's published shapes, against Ollama 0.24.0's rules.

Headers are built in memory (metadata as the llama.cpp/Ollama converters write it, tensors with
their real shapes) and read through gguf_geometry.geometry_from_header, so the same path as a
registry read is exercised without multi-gigabyte files. The expected bytes are worked by hand from
the cited engine source in each test's comments.
"""

import pytest

from ollama_gpu.planner.gguf_geometry import geometry_from_header
from ollama_gpu.planner.gguf_header import ArrayInfo, GGUFHeader, TensorRecord
from ollama_gpu.planner.placement import UnpredictableModel, place

F32, F16, Q8_0, MXFP4_OLLAMA, MXFP4, BF16, NVFP4 = 0, 1, 8, 4, 39, 30, 40


def header(arch, meta, tensors, vocab=32000):
    metadata = {"general.architecture": arch, **{f"{arch}.{key}": value for key, value in meta.items()}}
    if vocab:
        metadata["tokenizer.ggml.tokens"] = ArrayInfo(8, vocab)
    records, offset = [], 0
    for name, type_id, dims in tensors:
        records.append(TensorRecord(name, tuple(dims), type_id, offset))
    return GGUFHeader(3, metadata, tuple(records), data_offset=0)


def blocks(count, embedding, type_id=F16, extra=()):
    """One attention matrix per block (enough to give each block weights) plus per-block extras."""
    tensors = []
    for b in range(count):
        tensors.append((f"blk.{b}.attn_q.weight", type_id, (embedding, embedding)))
        tensors += [(name.format(b=b), t, dims) for name, t, dims in extra]
    return tensors


def cpu_place(geometry, **settings):
    options = {"gpu_free_vram": None, "gpu_overhead": 0, "num_ctx": 32768, "kv_cache_type": "f16",
               "flash_attention": True, "num_parallel": 1, **settings}
    return place(geometry, **options)


# google/gemma-3-4b-it (config.json text_config): hidden 2560, 34 layers, 8 heads, 4 KV heads,
# head_dim 256, sliding_window 1024, vocab 262208; its GGUF carries the vision tower as v.*/mm.*.
GEMMA3_4B = {"block_count": 34, "embedding_length": 2560, "attention.head_count": 8, "attention.head_count_kv": 4,
             "attention.key_length": 256, "attention.value_length": 256, "attention.sliding_window": 1024,
             "context_length": 131072}


def test_gemma3_windowed_layers_are_sized_by_the_window():
    # kvcache/causal.go Init: SWA cells = roundUp(1 x 1024 + 512, 256) = 1536; the 5 global layers
    # (model_text.go: (i+1) % 6 == 0 -> 5, 11, 17, 23, 29) hold roundUp(32768, 256) = 32768.
    # K and V per cell: 2 x 256 x 4 heads x 2 B = 4096 B.
    # 29 x 1536 x 4096 + 5 x 32768 x 4096 = 182,452,224 + 671,088,640 = 853,540,864
    # (a full-context cache on all 34 layers would be 4,563,402,752, 5.3x more).
    tensors = blocks(34, 2560) + [("token_embd.weight", Q8_0, (2560, 262208)), ("v.patch_embd.weight", F16, (14, 14, 3, 1152)),
                                  ("mm.mm_input_projection.weight", F16, (1152, 2560))]
    g = geometry_from_header(header("gemma3", GEMMA3_4B, tensors, vocab=262208), "gemma3:4b")
    p = cpu_place(g)
    assert p.engine == "ollama"
    assert p.kv_cpu == 853_540_864
    # ggml.go New: vision tensors (v.*, mm.*) belong to the output layer, so the engine budgets them there.
    assert g.output_bytes == 14 * 14 * 3 * 1152 * 2 + 1152 * 2560 * 2 + 2560 * 262208 // 32 * 34
    # Two sequences keep window + 1 cells each: roundUp(2 x 1025 + 512, 256) = 2816; global 65536.
    two = cpu_place(g, num_parallel=2)
    assert two.kv_cpu == 29 * 2816 * 4096 + 5 * 65536 * 4096


# openai/gpt-oss-20b (config.json): 24 layers, hidden 2880, 64 heads, 8 KV heads, head_dim 64,
# sliding_window 128 on even layers, 32 experts (4 per token), vocab 201088, experts in MXFP4.
GPTOSS_20B = {"block_count": 24, "embedding_length": 2880, "attention.head_count": 64, "attention.head_count_kv": 8,
              "attention.key_length": 64, "attention.value_length": 64, "attention.sliding_window": 128,
              "context_length": 131072, "expert_count": 32, "expert_used_count": 4, "expert_feed_forward_length": 2880}


def gptoss(expert_type):
    extra = [("blk.{b}.ffn_gate_exps.weight", expert_type, (2880, 2880, 32)),
             ("blk.{b}.ffn_gate_exps.bias", BF16, (2880, 32))]
    return geometry_from_header(header("gptoss", GPTOSS_20B, blocks(24, 2880, extra=extra), vocab=201088), "gpt-oss:20b")


def test_gptoss_even_layers_keep_4096_cells():
    # gptoss/model.go: NewSWAMemCache(128, 4096) for even blocks -> roundUp(4096 + 512, 256) = 4608
    # cells; odd blocks 32768. K+V per cell 2 x 64 x 8 x 2 B = 2048 B.
    # 12 x 4608 x 2048 + 12 x 32768 x 2048 = 113,246,208 + 805,306,368 = 918,552,576.
    p = cpu_place(gptoss(MXFP4_OLLAMA))
    assert p.kv_cpu == 918_552_576
    # At num_ctx 4096 the 4096-cell memory is not smaller than the context: every block is full.
    assert cpu_place(gptoss(MXFP4_OLLAMA), num_ctx=4096).kv_cpu == 24 * 4096 * 2048


def test_mxfp4_sizes_from_its_block_layout_under_both_type_ids():
    # MXFP4: 32 values in 17 bytes (ggml-common.h block_mxfp4; fs/ggml TypeSize 1 + 32/2). Ollama's
    # own files use type id 4, which ggml.go New remaps to 39. The BF16 expert bias becomes F32.
    expert = 2880 * 2880 * 32 // 32 * 17
    bias = 2880 * 32 * 4
    for type_id in (MXFP4_OLLAMA, MXFP4):
        g = gptoss(type_id)
        assert g.block_weight_bytes[0] == 2880 * 2880 * 2 + expert + bias


def test_a_type_newer_than_the_engine_is_refused_by_name():
    with pytest.raises(ValueError, match=r"NVFP4 \(ggml type 40, newer than Ollama 0.24.0's ggml\)"):
        gptoss(NVFP4)


# deepseek-ai/DeepSeek-V2-Lite (config.json): 27 layers, hidden 2048, 16 heads, kv_lora_rank 512,
# qk_rope_head_dim 64, qk_nope_head_dim 128, v_head_dim 128. llama.cpp's converter writes MLA
# files with head_count_kv 1, key_length 576 (512 + 64), value_length 512 and the per-head sizes
# in key_length_mla 192 / value_length_mla 128.
DEEPSEEK_V2_LITE_MLA = {"block_count": 27, "embedding_length": 2048, "attention.head_count": 16, "attention.head_count_kv": 1,
                        "attention.key_length": 576, "attention.value_length": 512, "attention.key_length_mla": 192,
                        "attention.value_length_mla": 128, "attention.kv_lora_rank": 512, "rope.dimension_count": 64,
                        "context_length": 163840}


def test_deepseek2_mla_caches_the_latent_and_drops_flash_attention():
    # deepseek2/model.go (isMLA): K = [64 + 512, 1 head], V = [512, 1 head] per cell:
    # (576 + 512) x 2 B = 2176 B; 27 x 32768 x 2176 = 1,925,185,536.
    # fs/ggml SupportsFlashAttention: key 576 != value 512, so flash attention goes off and a
    # q8_0 cache falls back to f16 (llm/server.go NewLlamaServer).
    g = geometry_from_header(header("deepseek2", DEEPSEEK_V2_LITE_MLA, blocks(27, 2048), vocab=102400), "deepseek-v2:16b")
    p = cpu_place(g, kv_cache_type="q8_0")
    assert (p.kv_cpu, p.kv_cache_type, p.flash_attention) == (1_925_185_536, "f16", False)
    assert any("flash attention enabled but not supported by model" in w for w in p.warnings)


def test_deepseek2_without_mla_keys_caches_per_head():
    # Older files: head_count_kv 16, key_length 192, value_length 128 -> (192 + 128) x 16 x 2 B = 10,240 B per cell.
    meta = {**DEEPSEEK_V2_LITE_MLA, "attention.head_count_kv": 16, "attention.key_length": 192, "attention.value_length": 128}
    del meta["attention.key_length_mla"], meta["attention.value_length_mla"]
    g = geometry_from_header(header("deepseek2", meta, blocks(27, 2048), vocab=102400), "deepseek-v2:16b")
    assert cpu_place(g).kv_cpu == 27 * 32768 * 10_240


# Qwen/Qwen3-Next-80B-A3B-Instruct (config.json): 48 layers, hidden 2048, full_attention_interval 4.
def test_qwen3next_recurrent_state_is_refused_with_what_is_known():
    meta = {"block_count": 48, "embedding_length": 2048, "attention.head_count": 16, "attention.head_count_kv": 2,
            "attention.key_length": 256, "attention.value_length": 256, "full_attention_interval": 4}
    g = geometry_from_header(header("qwen3next", meta, blocks(48, 2048), vocab=151936), "qwen3-next:80b")
    with pytest.raises(UnpredictableModel, match="recurrent state") as refused:
        cpu_place(g)
    assert "48 blocks of 8.0 MiB of weights" in str(refused.value)


# state-spaces/mamba-130m-hf (config.json): d_model 768, 24 layers, state_size 16, conv_kernel 4,
# expand 2 (inner 1536), vocab 50280. The converter writes attention.head_count 0.
def test_mamba_runs_on_the_llama_cpp_runner_with_its_recurrent_estimate():
    # fs/ggml GraphSize: a layer without heads is recurrent, f32:
    # ((4 - 1) x (1536 + 2 x 0 x 16) + 16 x 1536) x 4 = 116,736 B per layer, whatever the context.
    meta = {"block_count": 24, "embedding_length": 768, "attention.head_count": 0, "ssm.conv_kernel": 4,
            "ssm.inner_size": 1536, "ssm.state_size": 16, "ssm.time_step_rank": 48, "context_length": 1048576}
    g = geometry_from_header(header("mamba", meta, blocks(24, 768), vocab=50280), "mamba:130m")
    p = cpu_place(g)
    assert (p.engine, p.kv_cpu) == ("llama.cpp", 24 * 116_736)


# ibm-granite/granite-4.0-h-350m: 32 layers, attention (12 heads, 4 KV heads) only at 10, 13, 17
# and 27, Mamba2 elsewhere (state 128, 8 groups); hidden 768, Mamba2 inner size 1536, conv 4.
def test_granite_hybrid_mixes_kv_and_recurrent_state():
    # fs/ggml GraphSize: attention layers context x (64 + 64) x 4 x 2 B = 32768 x 1024 = 33,554,432;
    # Mamba2 layers ((4 - 1) x (1536 + 2 x 8 x 128) + 128 x 1536) x 4 = (10,752 + 196,608) x 4 = 829,440.
    kv_heads = [4 if i in (10, 13, 17, 27) else 0 for i in range(32)]
    meta = {"block_count": 32, "embedding_length": 768, "attention.head_count": 12, "attention.head_count_kv": kv_heads,
            "ssm.conv_kernel": 4, "ssm.inner_size": 1536, "ssm.state_size": 128, "ssm.group_count": 8,
            "context_length": 32768}
    g = geometry_from_header(header("granitehybrid", meta, blocks(32, 768), vocab=100352), "granite4:350m-h")
    p = cpu_place(g)
    assert p.kv_cpu == 4 * 33_554_432 + 28 * 829_440
