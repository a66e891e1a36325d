"""The llama.cpp runner's memory estimate, as Ollama 0.24.0 computes it before loading.

Architectures outside fs/ggml/ggml.go KV.OllamaEngineRequired (llama, gemma2, qwen2, mamba,
granitehybrid, ...) run on the llama.cpp runner. Its placement (llm/server.go llamaServer.Load)
does not measure anything: it takes per-layer KV sizes and two graph sizes from
fs/ggml/ggml.go GGML.GraphSize and packs layers with the same createLayout as the Go engine. The
"model weights", "kv cache" and "compute graph" lines it logs are these estimates, so the planner
reproduces them exactly from the header. (What llama.cpp then allocates differs; Ollama never
looks.) This module is a transcription of GraphSize: its formulas, integer arithmetic included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ollama_gpu.planner.architectures import per_layer
from ollama_gpu.planner.geometry import TensorInfo

MIB = 1024 * 1024
# fs/ggml/ggml.go kvCacheBytesPerElement.
BYTES_PER_ELEMENT = {"q8_0": 1.0, "q4_0": 0.5, "f32": 4.0}
# Types fs/ggml/ggml.go TensorType.TypeSize sizes as 0 bytes: Ollama's estimate would leave them out.
_UNSIZED_BY_OLLAMA = frozenset({"TQ1_0", "TQ2_0"})


@dataclass(frozen=True)
class EstimateInputs:
    """What GraphSize reads from a GGUF header (fs/ggml KV accessors, defaults included)."""

    architecture: str
    block_count: int
    embedding: int
    heads: tuple[int, ...]
    kv_heads: tuple[int, ...]
    key_length: int
    value_length: int
    head_dim_default: int  # EmbeddingHeadCountMax: embedding / smallest head count
    vocab: int
    ssm_conv_kernel: int
    ssm_inner_size: int
    ssm_state_size: int
    ssm_group_count: int
    feed_forward_length: int
    # fs/ggml Tensors.GroupLayers sizes: blk.N groups, output_norm, output (or token_embd).
    block_sizes: tuple[int, ...]
    output_size: int
    blk0_ffn_gate_exps: int | None  # size of blk.0.ffn_gate_exps.weight (mixtral 8x22b branch)
    blk0_ffn_gate0_rows: int | None  # shape[1] of blk.0.ffn_gate.0.weight (mixtral 8x7b branch)
    blk0_qkv_bias: int | None  # shape[0] of blk.0.attn_qkv.bias (chatglm)
    is_embedding: bool
    refusal: str | None = None


def estimate_inputs(get: Callable[[str], Any], architecture: str, tensors: Iterable[TensorInfo],
                    vocab: int | None) -> EstimateInputs:
    tensors = list(tensors)

    def key(name: str, default: int = 0) -> int:
        value = get(f"{architecture}.{name}")
        return default if value is None or isinstance(value, (list, tuple)) else int(value)

    block_count = key("block_count")
    embedding = key("embedding_length")
    heads = per_layer(get(f"{architecture}.attention.head_count"), block_count, 1)
    kv_heads = per_layer(get(f"{architecture}.attention.head_count_kv"), block_count, 1)
    head_min = _scalar_or_min(get(f"{architecture}.attention.head_count"), 1)
    head_dim_default = embedding // head_min if head_min > 0 else 0
    refusal = None
    unsized = sorted({t.ggml_type for t in tensors if t.ggml_type in _UNSIZED_BY_OLLAMA})
    if unsized:
        refusal = (
            f"tensors of type {', '.join(unsized)} count as 0 bytes in Ollama 0.24.0's estimate for the llama.cpp "
            "runner (fs/ggml/ggml.go TypeSize), so its layout would not match the memory the model needs"
        )
    if vocab is None:
        # GraphSize type-asserts tokenizer.ggml.tokens: without it Ollama cannot load the model.
        refusal = refusal or "the header has no tokenizer.ggml.tokens, which Ollama 0.24.0's estimate requires"
        vocab = 0
    blocks = [0] * block_count
    groups: dict[str, int] = {}
    by_name = {t.name: t for t in tensors}
    for tensor in tensors:
        parts = tensor.name.split(".")
        index = next((i for i, part in enumerate(parts) if part in ("blk", "mm")), -1)
        group = ".".join(parts[: index + 2]) if index != -1 and len(parts) > index + 2 else parts[0]
        groups[group] = groups.get(group, 0) + tensor.nbytes
    for i in range(block_count):
        blocks[i] = groups.get(f"blk.{i}", 0)
    output = groups.get("output_norm", 0) + groups.get("output", groups.get("token_embd", 0))
    gate_exps = by_name.get("blk.0.ffn_gate_exps.weight")
    gate0 = by_name.get("blk.0.ffn_gate.0.weight")
    qkv_bias = by_name.get("blk.0.attn_qkv.bias")
    return EstimateInputs(
        architecture=architecture, block_count=block_count, embedding=embedding,
        heads=tuple(heads), kv_heads=tuple(kv_heads),
        key_length=key("attention.key_length", head_dim_default),
        value_length=key("attention.value_length", head_dim_default),
        head_dim_default=head_dim_default, vocab=vocab,
        ssm_conv_kernel=key("ssm.conv_kernel"), ssm_inner_size=key("ssm.inner_size"),
        ssm_state_size=key("ssm.state_size"), ssm_group_count=key("ssm.group_count"),
        feed_forward_length=key("feed_forward_length"),
        block_sizes=tuple(blocks), output_size=output,
        blk0_ffn_gate_exps=gate_exps.nbytes if gate_exps else None,
        blk0_ffn_gate0_rows=gate0.shape[1] if gate0 and len(gate0.shape) > 1 else None,
        blk0_qkv_bias=qkv_bias.shape[0] if qkv_bias else None,
        is_embedding=get(f"{architecture}.pooling_type") is not None,
        refusal=refusal,
    )


def _scalar_or_min(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, (list, tuple)):
        return min((int(v) for v in value), default=default)
    return int(value)


@dataclass(frozen=True)
class GraphSize:
    kv: tuple[int, ...]
    partial_offload: int
    full_offload: int


def graph_size(e: EstimateInputs, *, context: int, batch: int, num_parallel: int, kv_cache_type: str) -> GraphSize:
    """fs/ggml/ggml.go GGML.GraphSize for the architectures the llama.cpp runner serves.

    ``context`` is num_ctx (already cut to the training context), ``batch`` the load request's
    batch size, ``kv_cache_type`` the type the load request carries ("" or "f16" for f16).
    """
    context *= num_parallel
    embedding, vocab = e.embedding, e.vocab
    heads = max(e.heads, default=1)
    heads_kv = max(e.kv_heads, default=1)
    embedding_heads, heads_k, heads_v = e.head_dim_default, e.key_length, e.value_length
    per_element = BYTES_PER_ELEMENT.get(kv_cache_type, 2.0)

    kv = []
    for layer_heads, layer_kv_heads in zip(e.heads, e.kv_heads):
        if layer_heads > 0 and layer_kv_heads > 0:
            kv.append(int(float(context * (heads_k + heads_v) * layer_kv_heads) * per_element))
        else:
            # A layer without heads is taken as recurrent: conv and SSM state in f32.
            conv = 0
            if e.ssm_conv_kernel > 0:
                conv = (e.ssm_conv_kernel - 1) * (e.ssm_inner_size + 2 * e.ssm_group_count * e.ssm_state_size)
            kv.append((conv + e.ssm_state_size * e.ssm_inner_size) * 4)

    full = partial = 0
    arch = e.architecture
    if arch in ("llama", "llama4"):
        full = max(4 * batch * (1 + 4 * embedding + context * (1 + heads)), 4 * batch * (embedding + vocab))
        partial = 4 * batch * embedding + max(
            4 * batch * (1 + embedding + max(context, embedding)) + embedding * embedding * 9 // 16
            + 4 * context * (batch * heads + embedding_heads * heads_kv),
            4 * batch * (embedding + vocab) + embedding * vocab * 105 // 128,
        )
        if e.blk0_ffn_gate_exps is not None:
            ff = e.feed_forward_length
            partial = max(
                3 * e.blk0_ffn_gate_exps + 4 * batch * (2 * ff + heads_kv + embedding + context + embedding_heads * heads_kv),
                4 * (context * batch * heads + context * embedding_heads * heads_kv + batch * 1024 + embedding_heads * heads_kv * batch),
            )
        elif e.blk0_ffn_gate0_rows is not None:
            rows = e.blk0_ffn_gate0_rows
            full = 4 * batch * (2 + 3 * embedding + context * (1 + heads) + 2 * heads_kv + rows)
            partial = max(
                4 * batch * (3 + embedding_heads * heads_kv + embedding + context * (1 + heads) + rows)
                + (embedding * embedding + 3 * embedding * heads_kv * rows) * 9 // 16,
                4 * batch * (1 + 2 * embedding + context * (1 + heads))
                + embedding * (6 * context * heads_kv // heads + embedding * 9 // 16),
            )
    elif arch in ("gemma", "gemma2"):
        full = max(4 * batch * (embedding + vocab),
                   4 * batch * (2 + context + context * heads + 2 * embedding + 2 * heads_k * heads))
        partial = max(
            4 * embedding * batch + embedding * vocab * 105 // 128 + 4 * vocab * batch,
            4 * batch * (2 * embedding + 1 + 2 * heads_k * heads + context + context * heads)
            + 4 * heads_k * context * 8 + embedding * heads_k * heads * 9 // 16,
        )
    elif arch == "command-r":
        full = max(4 * batch * (embedding + vocab), 4 * batch * (2 + 4 * embedding + context * (1 + heads)))
        partial = max(4 * batch * (embedding + vocab) + embedding * vocab * 105 // 128,
                      4 * batch * (1 + 2 * embedding + context * (1 + heads)) + 4 * embedding * context + embedding * embedding * 9 // 16)
    elif arch == "qwen2":
        full = max(4 * batch * (embedding + vocab), 4 * batch * (1 + 2 * embedding + context + context * heads))
        partial = max(4 * batch * (embedding + vocab) + embedding * vocab * 105 // 128,
                      4 * (batch * (1 + 2 * embedding + context * (1 + heads)) + embedding * (1 + context)))
    elif arch == "phi2":
        full = max(4 * batch * (embedding + vocab), 4 * batch * (1 + 4 * embedding + context + context * heads))
        partial = max(4 * batch * (2 * embedding + vocab) + embedding * vocab * 105 // 128,
                      4 * batch * (2 + 3 * embedding + context + context * heads))
    elif arch == "stablelm":
        full = 4 * batch * (context * (1 + heads) + 3 * embedding + 2)
        partial = max(4 * batch * (vocab + 2 * embedding), full)
    elif arch == "chatglm":
        full = 4 * batch * (embedding + vocab)
        partial = 4 * batch * (embedding + vocab) + embedding * vocab * 105 // 128
        if e.blk0_qkv_bias is not None:
            bias = e.blk0_qkv_bias
            full = max(full, 4 * batch * (2 + 2 * embedding + context + context * heads + heads_k * heads + bias))
            partial = max(partial, 4 * batch * (1 + 2 * embedding + heads_k * heads + context + context * heads)
                          + 4 * heads_k * context + 4 * context * heads_k + 4 * bias)
    return GraphSize(tuple(kv), partial, full)


def graph_fallbacks(e: EstimateInputs, sizes: GraphSize) -> tuple[int, int]:
    """llm/server.go llamaServer.Load: an architecture GraphSize has no formula for gets
    GQA x total KV / 6 for both graphs."""
    partial, full = sizes.partial_offload, sizes.full_offload
    if partial == 0:
        heads_kv = min(e.kv_heads, default=1) or 1
        partial = max(e.heads, default=1) // heads_kv * sum(sizes.kv) // 6
    if full == 0:
        full = partial
    return partial, full
