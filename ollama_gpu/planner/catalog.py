"""Built-in models, derived from architecture and quantization recipe rather than typed-in totals.

Each entry lists the model's tensors with their shapes and ggml types, and the sizes follow from
the ggml block layouts (geometry.GGML_TYPE_LAYOUT). That way a wrong shape or recipe shows up as a
wrong file size in the tests, which compare against published figures (ollama-facts.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ollama_gpu.planner.geometry import ModelGeometry, ModelShape, TensorInfo, geometry_from_tensors
from ollama_gpu.planner.gguf_geometry import rules_from_metadata

# A recipe maps (tensor role, block index or None, block count) to a ggml type name.
Recipe = Callable[[str, "int | None", int], str]

# Qwen3-30B-A3B (Instruct/Thinking-2507): qwen3moe, 48 blocks, hidden 2048, 32 query heads over 4 KV
# heads of 128 dims, 128 experts of FFN width 768 with 8 routed per token, vocabulary 151936 with an
# untied output matrix, native context 262144 (the 2507 releases).
QWEN3_30B_A3B = ModelShape(
    architecture="qwen3moe",
    block_count=48,
    embedding_length=2048,
    head_count=32,
    head_count_kv=4,
    head_dim=128,
    context_length=262144,
    vocab_size=151936,
    expert_count=128,
    expert_used_count=8,
    expert_ff_length=768,
)

# TinyLlama-1.1B: llama, 22 blocks, hidden 2048, 32 query heads over 4 KV heads of 64 dims, FFN
# 5632, vocabulary 32000 with an untied output, context 2048. Small enough for a CPU-only box.
TINYLLAMA_1_1B = ModelShape(
    architecture="llama",
    block_count=22,
    embedding_length=2048,
    head_count=32,
    head_count_kv=4,
    head_dim=64,
    context_length=2048,
    vocab_size=32000,
    feed_forward_length=5632,
)


def _transformer_tensors(shape: ModelShape, recipe: Recipe) -> Iterator[TensorInfo]:
    """The tensors of a llama-style decoder (llama, qwen3, qwen3moe), in GGUF naming and ggml order.

    Norm vectors and the MoE router stay F32 in every llama.cpp recipe, so they are fixed here and
    the recipe only picks types for the weight matrices.
    """
    e, n = shape.embedding_length, shape.block_count
    q_width = shape.head_count * shape.head_dim
    kv_width = shape.head_count_kv * shape.head_dim

    def matrix(role: str, block: int | None, dims: tuple[int, ...]) -> TensorInfo:
        prefix = "" if block is None else f"blk.{block}."
        return TensorInfo(f"{prefix}{role}.weight", recipe(role, block, n), dims)

    def vector(role: str, block: int | None, length: int) -> TensorInfo:
        prefix = "" if block is None else f"blk.{block}."
        return TensorInfo(f"{prefix}{role}.weight", "F32", (length,))

    yield matrix("token_embd", None, (e, shape.vocab_size))
    for block in range(n):
        yield vector("attn_norm", block, e)
        yield matrix("attn_q", block, (e, q_width))
        yield matrix("attn_k", block, (e, kv_width))
        yield matrix("attn_v", block, (e, kv_width))
        yield matrix("attn_output", block, (q_width, e))
        if shape.architecture.startswith("qwen3"):
            yield vector("attn_q_norm", block, shape.head_dim)
            yield vector("attn_k_norm", block, shape.head_dim)
        yield vector("ffn_norm", block, e)
        if shape.is_moe:
            experts, width = shape.expert_count, shape.expert_ff_length
            yield TensorInfo(f"blk.{block}.ffn_gate_inp.weight", "F32", (e, experts))
            yield matrix("ffn_gate_exps", block, (e, width, experts))
            yield matrix("ffn_up_exps", block, (e, width, experts))
            yield matrix("ffn_down_exps", block, (width, e, experts))
        else:
            width = shape.feed_forward_length
            yield matrix("ffn_gate", block, (e, width))
            yield matrix("ffn_up", block, (e, width))
            yield matrix("ffn_down", block, (width, e))
    yield vector("output_norm", None, e)
    yield matrix("output", None, (e, shape.vocab_size))


def _q8_0(role: str, block: int | None, block_count: int) -> str:
    """Q8_0: every weight matrix in Q8_0 (llama.cpp keeps even the output in Q8_0 for this type)."""
    return "Q8_0"


def _uses_more_bits(block: int, block_count: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the blocks and every third between."""
    eighth = block_count // 8
    return block < eighth or block >= 7 * block_count // 8 or (block - eighth) % 3 == 2


def _q4_k_m(role: str, block: int | None, block_count: int) -> str:
    """Q4_K_M (llama.cpp llama_tensor_get_type): Q4_K throughout, Q6_K for the output matrix and,
    on the "more bits" blocks, for attn_v and the down projection (ffn_down / ffn_down_exps)."""
    if role == "output":
        return "Q6_K"
    if block is not None and role in {"attn_v", "ffn_down", "ffn_down_exps"} and _uses_more_bits(block, block_count):
        return "Q6_K"
    return "Q4_K"


def _q4_0(role: str, block: int | None, block_count: int) -> str:
    """Q4_0: Q4_0 throughout except the output matrix, which llama.cpp raises to Q6_K."""
    return "Q6_K" if role == "output" else "Q4_0"


@dataclass(frozen=True)
class CatalogEntry:
    """A model Ollama's library serves under ``name``, with the recipe its GGUF was made with."""

    name: str
    family: str
    shape: ModelShape
    recipe: Recipe

    def tensors(self) -> list[TensorInfo]:
        return list(_transformer_tensors(self.shape, self.recipe))

    def metadata(self) -> dict[str, object]:
        """The GGUF metadata keys the planner reads, as the published file carries them."""
        shape, arch = self.shape, self.shape.architecture
        values = {
            "block_count": shape.block_count, "embedding_length": shape.embedding_length,
            "attention.head_count": shape.head_count, "attention.head_count_kv": shape.head_count_kv,
            "attention.key_length": shape.head_dim, "attention.value_length": shape.head_dim,
            "context_length": shape.context_length, "feed_forward_length": shape.feed_forward_length,
            "expert_count": shape.expert_count, "expert_used_count": shape.expert_used_count,
            "expert_feed_forward_length": shape.expert_ff_length,
        }
        return {"general.architecture": arch, **{f"{arch}.{key}": value for key, value in values.items() if value}}

    def geometry(self) -> ModelGeometry:
        # file_size counts tensor data only; the GGUF header adds a few MB of tokenizer metadata.
        tensors = self.tensors()
        rules = rules_from_metadata(self.metadata().get, self.shape, tensors, self.shape.vocab_size)
        return geometry_from_tensors(self.name, self.shape, tensors, rules=rules)


_ENTRIES = (
    CatalogEntry("qwen3:30b-a3b-thinking-2507-q8_0", "qwen3-30b-a3b", QWEN3_30B_A3B, _q8_0),
    CatalogEntry("qwen3:30b-a3b-thinking-2507-q4_K_M", "qwen3-30b-a3b", QWEN3_30B_A3B, _q4_k_m),
    CatalogEntry("tinyllama:1.1b", "tinyllama-1.1b", TINYLLAMA_1_1B, _q4_0),
)
CATALOG: dict[str, CatalogEntry] = {entry.name: entry for entry in _ENTRIES}


def catalog_geometry(name: str) -> ModelGeometry:
    """Geometry of a built-in model; a KeyError names the models that exist."""
    try:
        return CATALOG[name].geometry()
    except KeyError:
        raise KeyError(f"unknown model {name!r}; built-in models: {', '.join(CATALOG)}") from None


def alternatives(name: str) -> tuple[ModelGeometry, ...]:
    """The other quantizations of the same model, for "a cheaper build would fit" advice."""
    family = CATALOG[name].family if name in CATALOG else None
    return tuple(entry.geometry() for entry in _ENTRIES if entry.family == family and entry.name != name)
