"""The models the GPU lab generates: real shapes and quantization recipes, random weights.

Qwen3-30B-A3B comes from the planner's catalog (the model this project deploys, at q8_0 and
q4_K_M). The lab adds one dense model that spills on an A10 (Qwen3-32B, q4_K_M) and one with
sliding-window attention (Gemma 3 27B, q4_K_M, text only). Their shapes are the published
configurations (Hugging Face config.json of Qwen/Qwen3-32B and google/gemma-3-27b-it); the
tensor layout follows the pinned engine's model code (model/models/qwen3, model/models/gemma3).

The tokenizer is byte-level BPE with no merges, padded to the real vocabulary size: every prompt
character is exactly one token, so a prompt of N letters is N tokens (``prompt_text``) and the
embedding and output matrices keep their real sizes.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ollama_gpu.gpulab.gguf_writer import Typed, int32_array, uint32
from ollama_gpu.planner.catalog import CATALOG, CatalogEntry, Recipe
from ollama_gpu.planner.geometry import ModelGeometry, ModelShape, TensorInfo, geometry_from_tensors
from ollama_gpu.planner.gguf_geometry import rules_from_metadata

Q8 = CATALOG["qwen3:30b-a3b-thinking-2507-q8_0"]
Q4 = CATALOG["qwen3:30b-a3b-thinking-2507-q4_K_M"]

# Qwen/Qwen3-32B config.json: 64 layers, hidden 5120, 64 query heads over 8 KV heads of 128,
# intermediate 25600, vocabulary 151936, untied output, 40960 positions.
QWEN3_32B = ModelShape(
    architecture="qwen3",
    block_count=64,
    embedding_length=5120,
    head_count=64,
    head_count_kv=8,
    head_dim=128,
    context_length=40960,
    vocab_size=151936,
    feed_forward_length=25600,
)

# google/gemma-3-27b-it text_config: 62 layers, hidden 5376, 32 query heads over 16 KV heads of
# 128, intermediate 21504, vocabulary 262144 tied to the output, 131072 positions, sliding window
# 1024 on five of every six layers.
GEMMA3_27B = ModelShape(
    architecture="gemma3",
    block_count=62,
    embedding_length=5376,
    head_count=32,
    head_count_kv=16,
    head_dim=128,
    context_length=131072,
    vocab_size=262144,
    feed_forward_length=21504,
)
GEMMA3_SLIDING_WINDOW = 1024


def byte_symbols() -> list[str]:
    """GPT-2's byte-to-symbol table, which Ollama's BytePairEncoding decodes with."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[byte] for byte in range(256)]


def vocabulary(size: int) -> tuple[list[str], list[int]]:
    """256 byte tokens, filler tokens up to ``size``, and an end-of-text control token last."""
    tokens = byte_symbols()
    tokens += [f"lab{index}" for index in range(size - len(tokens) - 1)]
    tokens.append("<|endoftext|>")
    types = [1] * (size - 1) + [3]  # NORMAL, CONTROL
    return tokens, types


def prompt_text(tokens: int, seed: int) -> str:
    """``tokens`` lowercase letters and spaces: one token each with the lab's tokenizer. The
    seed makes every prompt differ from its first character, so Ollama's prompt cache skips none."""
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz    ") for _ in range(tokens))


@dataclass(frozen=True)
class LabModel:
    """A model the lab writes: its GGUF tensors and metadata, and the planner's view of it."""

    key: str
    name: str
    shape: ModelShape
    tensor_list: Callable[[], list[TensorInfo]]
    extra_metadata: dict[str, object] = field(default_factory=dict)
    file_type: int = 7  # llama_ftype: 7 = MOSTLY_Q8_0, 15 = MOSTLY_Q4_K_M

    def tensors(self) -> list[TensorInfo]:
        return self.tensor_list()

    def geometry(self) -> ModelGeometry:
        """As the planner reads the written file: shapes from the tensors, the engine's rules
        (sliding windows among them) from the metadata."""
        tensors = self.tensors()
        metadata = {key: value.value if isinstance(value, Typed) else value for key, value in self.metadata().items()}
        rules = rules_from_metadata(metadata.get, self.shape, tensors, len(metadata["tokenizer.ggml.tokens"]))
        return geometry_from_tensors(self.name, self.shape, tensors, rules=rules)

    def metadata(self) -> dict[str, object | Typed]:
        s, arch = self.shape, self.shape.architecture
        tokens, types = vocabulary(s.vocab_size)
        end = len(tokens) - 1
        meta: dict[str, object | Typed] = {
            "general.architecture": arch,
            "general.name": f"gpu-lab {self.key}",
            "general.file_type": uint32(self.file_type),
            f"{arch}.block_count": uint32(s.block_count),
            f"{arch}.context_length": uint32(s.context_length),
            f"{arch}.embedding_length": uint32(s.embedding_length),
            f"{arch}.feed_forward_length": uint32(s.feed_forward_length or 3 * s.embedding_length),
            f"{arch}.attention.head_count": uint32(s.head_count),
            f"{arch}.attention.head_count_kv": uint32(s.head_count_kv),
            f"{arch}.attention.key_length": uint32(s.head_dim),
            f"{arch}.attention.value_length": uint32(s.head_dim),
            f"{arch}.attention.layer_norm_rms_epsilon": 1e-6,
            f"{arch}.rope.freq_base": 1_000_000.0,
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.pre": "qwen2",
            "tokenizer.ggml.tokens": tokens,
            "tokenizer.ggml.token_type": int32_array(types),
            "tokenizer.ggml.merges": [],
            "tokenizer.ggml.bos_token_id": uint32(end),
            "tokenizer.ggml.eos_token_id": uint32(end),
            "tokenizer.ggml.padding_token_id": uint32(end),
            "tokenizer.ggml.add_bos_token": False,
        }
        if s.is_moe:
            meta[f"{arch}.expert_count"] = uint32(s.expert_count)
            meta[f"{arch}.expert_used_count"] = uint32(s.expert_used_count)
            meta[f"{arch}.expert_feed_forward_length"] = uint32(s.expert_ff_length)
        meta.update(self.extra_metadata)
        return meta


def _gemma3_tensors(shape: ModelShape, recipe: Recipe) -> Iterator[TensorInfo]:
    """model/models/gemma3 model_text.go: q/k norms, post-attention and post-FFN norms, a dense
    gated FFN, and no output matrix (the engine reuses token_embd, "output,alt:token_embd")."""
    e, n, hd = shape.embedding_length, shape.block_count, shape.head_dim
    q_width, kv_width, ff = shape.head_count * hd, shape.head_count_kv * hd, shape.feed_forward_length
    # llama.cpp's Q4_K_M stores a tied embedding at the output's type (Q6_K).
    yield TensorInfo("token_embd.weight", "Q6_K", (e, shape.vocab_size))
    for block in range(n):
        def matrix(role: str, dims: tuple[int, int]) -> TensorInfo:
            return TensorInfo(f"blk.{block}.{role}.weight", recipe(role, block, n), dims)

        def norm(role: str, length: int = e) -> TensorInfo:
            return TensorInfo(f"blk.{block}.{role}.weight", "F32", (length,))

        yield norm("attn_norm")
        yield matrix("attn_q", (e, q_width))
        yield matrix("attn_k", (e, kv_width))
        yield matrix("attn_v", (e, kv_width))
        yield norm("attn_q_norm", hd)
        yield norm("attn_k_norm", hd)
        yield matrix("attn_output", (q_width, e))
        yield norm("post_attention_norm")
        yield norm("ffn_norm")
        yield matrix("ffn_gate", (e, ff))
        yield matrix("ffn_up", (e, ff))
        yield matrix("ffn_down", (ff, e))
        yield norm("post_ffw_norm")
    yield TensorInfo("output_norm.weight", "F32", (e,))


_DENSE = CatalogEntry("gpu-lab/qwen3-32b-q4_K_M", "gpu-lab-qwen3-32b", QWEN3_32B, Q4.recipe)

MODELS: dict[str, LabModel] = {
    model.key: model
    for model in (
        LabModel("qwen3-30b-a3b-q8_0", Q8.name, Q8.shape, Q8.tensors, file_type=7),
        LabModel("qwen3-30b-a3b-q4_K_M", Q4.name, Q4.shape, Q4.tensors, file_type=15),
        LabModel("qwen3-32b-q4_K_M", _DENSE.name, QWEN3_32B, _DENSE.tensors, file_type=15),
        LabModel(
            "gemma3-27b-q4_K_M",
            "gpu-lab/gemma3-27b-q4_K_M",
            GEMMA3_27B,
            lambda: list(_gemma3_tensors(GEMMA3_27B, Q4.recipe)),
            extra_metadata={
                "gemma3.attention.sliding_window": uint32(GEMMA3_SLIDING_WINDOW),
                "gemma3.rope.local.freq_base": 10_000.0,
                "gemma3.rope.scaling.type": "linear",
                "gemma3.rope.scaling.factor": 8.0,
            },
            file_type=15,
        ),
    )
}


def scaled_down(model: LabModel, block_count: int, vocab_size: int, expert_count: int | None = None) -> LabModel:
    """The same model with fewer blocks, a smaller vocabulary and, for MoE models, optionally fewer
    experts: what the CPU tests write and load."""
    experts = expert_count or model.shape.expert_count
    shape = dataclasses.replace(model.shape, block_count=block_count, vocab_size=vocab_size,
                                expert_count=experts, expert_used_count=min(model.shape.expert_used_count, experts))
    kept = []
    for tensor in model.tensors():
        if tensor.name.startswith("blk.") and int(tensor.name.split(".")[1]) >= block_count:
            continue
        if tensor.name in ("token_embd.weight", "output.weight"):
            tensor = TensorInfo(tensor.name, tensor.ggml_type, (tensor.shape[0], vocab_size))
        elif model.shape.is_moe and ("_exps" in tensor.name or "ffn_gate_inp" in tensor.name):
            tensor = TensorInfo(tensor.name, tensor.ggml_type, (*tensor.shape[:-1], experts))
        kept.append(tensor)
    return dataclasses.replace(model, shape=shape, tensor_list=lambda: kept)
