"""Tiny GGUFs of the architecture families the planner has rules for, that the real 0.24.0 server
loads: gemma3 (sliding window every layer but each 6th), gpt-oss (sliding window with a 4096-cell
memory on even layers), deepseek2 with MLA (the compressed latent cache) and llama (the llama.cpp
runner and its estimate). Weights are small random numbers; only the memory the server reports
matters. Tokenizer: the byte-level BPE of tiny_model, which every one of these reads.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter

from tests.integration.tiny_model import END_OF_TEXT, _vocabulary

EMBEDDING = 128
HEADS = 4
KV_HEADS = 2
HEAD_DIM = 64
CONTEXT = 8192


def _writer(path: Path, arch: str, blocks: int, pre: str = "qwen2") -> tuple[GGUFWriter, int]:
    tokens, types, merges = _vocabulary()
    eot = tokens.index(END_OF_TEXT)
    writer = GGUFWriter(str(path), arch)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(blocks)
    writer.add_feed_forward_length(2 * EMBEDDING)
    writer.add_head_count(HEADS)
    writer.add_rope_freq_base(10_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(eot)
    writer.add_eos_token_id(eot)
    writer.add_add_bos_token(False)
    return writer, len(tokens)


def _finish(writer: GGUFWriter, tensors: dict[str, np.ndarray]) -> None:
    for name, data in tensors.items():
        raw = GGMLQuantizationType.F16 if data.dtype == np.float16 else GGMLQuantizationType.F32
        writer.add_tensor(name, data, raw_dtype=raw)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _random() -> tuple[Callable[..., np.ndarray], Callable[[int], np.ndarray]]:
    rng = np.random.default_rng(7)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float16)

    def norm(width: int) -> np.ndarray:
        return np.ones(width, dtype=np.float32)

    return weights, norm


def write_gemma3(path: Path, blocks: int = 6, window: int = 256) -> Path:
    writer, vocab = _writer(path, "gemma3", blocks)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_sliding_window(window)
    w, n = _random()
    tensors = {"token_embd.weight": w(vocab, EMBEDDING), "output_norm.weight": n(EMBEDDING)}
    for b in range(blocks):
        p = f"blk.{b}"
        tensors |= {
            f"{p}.attn_norm.weight": n(EMBEDDING), f"{p}.attn_q.weight": w(HEADS * HEAD_DIM, EMBEDDING),
            f"{p}.attn_q_norm.weight": n(HEAD_DIM), f"{p}.attn_k.weight": w(KV_HEADS * HEAD_DIM, EMBEDDING),
            f"{p}.attn_k_norm.weight": n(HEAD_DIM), f"{p}.attn_v.weight": w(KV_HEADS * HEAD_DIM, EMBEDDING),
            f"{p}.attn_output.weight": w(EMBEDDING, HEADS * HEAD_DIM), f"{p}.post_attention_norm.weight": n(EMBEDDING),
            f"{p}.ffn_norm.weight": n(EMBEDDING), f"{p}.ffn_gate.weight": w(2 * EMBEDDING, EMBEDDING),
            f"{p}.ffn_up.weight": w(2 * EMBEDDING, EMBEDDING), f"{p}.ffn_down.weight": w(EMBEDDING, 2 * EMBEDDING),
            f"{p}.post_ffw_norm.weight": n(EMBEDDING),
        }
    _finish(writer, tensors)
    return path


def write_gptoss(path: Path, blocks: int = 4, window: int = 128, experts: int = 4) -> Path:
    writer, vocab = _writer(path, "gptoss", blocks)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_sliding_window(window)
    writer.add_expert_count(experts)
    writer.add_expert_used_count(2)
    writer.add_expert_feed_forward_length(EMBEDDING)
    w, n = _random()
    tensors = {"token_embd.weight": w(vocab, EMBEDDING), "output_norm.weight": n(EMBEDDING), "output.weight": w(vocab, EMBEDDING)}
    for b in range(blocks):
        p = f"blk.{b}"
        tensors |= {
            f"{p}.attn_norm.weight": n(EMBEDDING), f"{p}.attn_q.weight": w(HEADS * HEAD_DIM, EMBEDDING),
            f"{p}.attn_k.weight": w(KV_HEADS * HEAD_DIM, EMBEDDING), f"{p}.attn_v.weight": w(KV_HEADS * HEAD_DIM, EMBEDDING),
            f"{p}.attn_out.weight": w(EMBEDDING, HEADS * HEAD_DIM), f"{p}.attn_sinks.weight": n(HEADS),
            f"{p}.post_attention_norm.weight": n(EMBEDDING), f"{p}.ffn_gate_inp.weight": w(experts, EMBEDDING).astype(np.float32),
            f"{p}.ffn_gate_exps.weight": w(experts, EMBEDDING, EMBEDDING), f"{p}.ffn_up_exps.weight": w(experts, EMBEDDING, EMBEDDING),
            f"{p}.ffn_down_exps.weight": w(experts, EMBEDDING, EMBEDDING),
        }
    _finish(writer, tensors)
    return path


def write_deepseek2_mla(path: Path, blocks: int = 3, kv_lora_rank: int = 64, rope: int = 32, nope: int = 32, v_head: int = 32) -> Path:
    writer, vocab = _writer(path, "deepseek2", blocks, pre="deepseek-v3")
    writer.add_head_count_kv(1)
    writer.add_key_length(kv_lora_rank + rope)
    writer.add_value_length(kv_lora_rank)
    writer.add_uint32("deepseek2.attention.key_length_mla", nope + rope)
    writer.add_uint32("deepseek2.attention.value_length_mla", v_head)
    writer.add_uint32("deepseek2.attention.kv_lora_rank", kv_lora_rank)
    writer.add_rope_dimension_count(rope)
    writer.add_uint32("deepseek2.leading_dense_block_count", blocks)
    w, n = _random()
    tensors = {"token_embd.weight": w(vocab, EMBEDDING), "output_norm.weight": n(EMBEDDING), "output.weight": w(vocab, EMBEDDING)}
    for b in range(blocks):
        p = f"blk.{b}"
        tensors |= {
            f"{p}.attn_norm.weight": n(EMBEDDING), f"{p}.attn_q.weight": w(HEADS * (nope + rope), EMBEDDING),
            f"{p}.attn_kv_a_mqa.weight": w(kv_lora_rank + rope, EMBEDDING), f"{p}.attn_kv_a_norm.weight": n(kv_lora_rank),
            f"{p}.attn_k_b.weight": w(HEADS, kv_lora_rank, nope), f"{p}.attn_v_b.weight": w(HEADS, v_head, kv_lora_rank),
            f"{p}.attn_output.weight": w(EMBEDDING, HEADS * v_head), f"{p}.ffn_norm.weight": n(EMBEDDING),
            f"{p}.ffn_gate.weight": w(2 * EMBEDDING, EMBEDDING), f"{p}.ffn_up.weight": w(2 * EMBEDDING, EMBEDDING),
            f"{p}.ffn_down.weight": w(EMBEDDING, 2 * EMBEDDING),
        }
    _finish(writer, tensors)
    return path


def write_llama(path: Path, blocks: int = 4) -> Path:
    writer, vocab = _writer(path, "llama", blocks, pre="llama-bpe")
    writer.add_head_count_kv(KV_HEADS)
    writer.add_vocab_size(vocab)
    writer.add_rope_dimension_count(EMBEDDING // HEADS)
    w, n = _random()
    tensors = {"token_embd.weight": w(vocab, EMBEDDING), "output_norm.weight": n(EMBEDDING), "output.weight": w(vocab, EMBEDDING)}
    head = EMBEDDING // HEADS
    for b in range(blocks):
        p = f"blk.{b}"
        tensors |= {
            f"{p}.attn_norm.weight": n(EMBEDDING), f"{p}.attn_q.weight": w(EMBEDDING, EMBEDDING),
            f"{p}.attn_k.weight": w(KV_HEADS * head, EMBEDDING), f"{p}.attn_v.weight": w(KV_HEADS * head, EMBEDDING),
            f"{p}.attn_output.weight": w(EMBEDDING, EMBEDDING), f"{p}.ffn_norm.weight": n(EMBEDDING),
            f"{p}.ffn_gate.weight": w(2 * EMBEDDING, EMBEDDING), f"{p}.ffn_up.weight": w(2 * EMBEDDING, EMBEDDING),
            f"{p}.ffn_down.weight": w(EMBEDDING, 2 * EMBEDDING),
        }
    _finish(writer, tensors)
    return path


WRITERS = {"gemma3": write_gemma3, "gptoss": write_gptoss, "deepseek2-mla": write_deepseek2_mla, "llama": write_llama}
