"""What the planner needs to know about a model: its shape and where its bytes are.

Ollama's Go engine does not place tensors one by one: it groups them into "layers" (one per
transformer block plus one output layer) and moves whole layers between devices. The geometry
therefore keeps the bytes per block, not per tensor, using the same grouping rules as the engine
(ml/backend/ggml/ggml.go, function New: the switch over meta.Tensors().Items()).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ollama_gpu.planner.architectures import EngineRules

# Bytes per block of values for each ggml storage type, as (values per block, bytes per block).
# These are the layouts of ggml's block structs (ggml-common.h): e.g. a Q8_0 block is one f16 scale
# plus 32 int8 values = 34 bytes, a Q4_K super-block of 256 values is 144 bytes, Q6_K is 210 bytes.
GGML_TYPE_LAYOUT: dict[str, tuple[int, int]] = {
    "F32": (1, 4),
    "F16": (1, 2),
    "BF16": (1, 2),
    "Q4_0": (32, 18),
    "Q4_1": (32, 20),
    "Q5_0": (32, 22),
    "Q5_1": (32, 24),
    "Q8_0": (32, 34),
    "Q8_1": (32, 36),  # two f16 (d, s) + 32 int8 (ggml-common.h static_assert); gguf-py 0.19 says 40
    "Q2_K": (256, 84),
    "Q3_K": (256, 110),
    "Q4_K": (256, 144),
    "Q5_K": (256, 176),
    "Q6_K": (256, 210),
    "Q8_K": (256, 292),
    "IQ1_S": (256, 50),
    "IQ1_M": (256, 56),
    "IQ2_XXS": (256, 66),
    "IQ2_XS": (256, 74),
    "IQ2_S": (256, 82),
    "IQ3_XXS": (256, 98),
    "IQ3_S": (256, 110),
    "IQ4_NL": (32, 18),
    "IQ4_XS": (256, 136),
    "TQ1_0": (256, 54),
    "TQ2_0": (256, 66),
    "MXFP4": (32, 17),
    "I8": (1, 1),
    "I16": (1, 2),
    "I32": (1, 4),
    "I64": (1, 8),
    "F64": (1, 8),
}


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as GGUF describes it: ggml type name and shape in ggml order (ne0 first)."""

    name: str
    ggml_type: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Stored size: rows of ne0 values packed in whole quantization blocks (ggml_nbytes)."""
        try:
            values_per_block, bytes_per_block = GGML_TYPE_LAYOUT[self.ggml_type.upper()]
        except KeyError:
            raise ValueError(
                f"tensor {self.name}: {self.ggml_type} is not a type Ollama 0.24.0's ggml can load "
                f"(known: {', '.join(GGML_TYPE_LAYOUT)}), so its bytes cannot be predicted"
            ) from None
        row_length, *other_dims = self.shape
        if row_length % values_per_block:
            raise ValueError(
                f"tensor {self.name}: row of {row_length} values is not a whole number of "
                f"{self.ggml_type} blocks ({values_per_block} values each)"
            )
        rows = 1
        for dim in other_dims:
            rows *= dim
        return rows * (row_length // values_per_block) * bytes_per_block


@dataclass(frozen=True, kw_only=True)
class ModelShape:
    """Hyperparameters from the GGUF metadata (``{arch}.*`` keys) that decide memory use.

    expert_* are 0 for dense models; feed_forward_length is 0 for models whose blocks are all MoE.
    """

    architecture: str
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    head_dim: int
    context_length: int
    vocab_size: int
    feed_forward_length: int = 0
    expert_count: int = 0
    expert_used_count: int = 0
    expert_ff_length: int = 0

    @property
    def is_moe(self) -> bool:
        return self.expert_count > 0 and self.expert_used_count > 0


@dataclass(frozen=True, kw_only=True)
class ModelGeometry(ModelShape):
    """A model's shape plus its bytes, grouped the way Ollama's Go engine groups layers.

    block_active_bytes is what one decoded token reads from each block: all of a dense block, but
    only expert_used_count / expert_count of the ``*_exps`` tensors of a MoE block. output_bytes is
    the output layer (``output`` + ``output_norm``, or a second copy of ``token_embd`` when the
    output is tied to it). token_embd always stays in host RAM (the engine's "InputWeights").
    block_largest_tensor_bytes is each block's biggest tensor: when a block stays in host RAM,
    0.24.0 copies its weights to the GPU one tensor at a time for prompt batches (see graph.py).
    """

    name: str
    block_weight_bytes: tuple[int, ...]
    block_active_bytes: tuple[int, ...]
    block_largest_tensor_bytes: tuple[int, ...]
    token_embd_bytes: int
    output_bytes: int
    file_size: int
    # How the pinned engine loads this architecture (runner, per-block cache, refusal); None for a
    # plain causal cache of head_dim x head_count_kv on every block, on the engine the name implies.
    rules: EngineRules | None = None
    # Things the reader noticed that change no figure but that a user should know.
    notes: tuple[str, ...] = ()
    # Every tensor as the GGUF lists it: llama.cpp places tensors one by one (llamacpp_placement.py).
    tensors: tuple[TensorInfo, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.block_count <= 0:
            raise ValueError(f"{self.name}: block_count must be positive")
        if len(self.block_weight_bytes) != self.block_count:
            raise ValueError(f"{self.name}: {len(self.block_weight_bytes)} block sizes for {self.block_count} blocks")
        for label, sizes in (("active", self.block_active_bytes), ("largest-tensor", self.block_largest_tensor_bytes)):
            if len(sizes) != self.block_count:
                raise ValueError(f"{self.name}: {len(sizes)} {label} sizes for {self.block_count} blocks")
        # Pure state-space models (mamba) have no attention heads; their rules say what they cache.
        if self.rules is None and (self.head_count <= 0 or self.head_count_kv <= 0 or self.head_dim <= 0):
            raise ValueError(f"{self.name}: head counts and head_dim must be positive")

    @property
    def weight_bytes(self) -> int:
        """All weights the engine allocates (token_embd, blocks, output layer)."""
        return self.token_embd_bytes + sum(self.block_weight_bytes) + self.output_bytes

    @property
    def active_bytes_per_token(self) -> int:
        """Weights read per decoded token: active part of every block plus the whole output layer.

        token_embd contributes one row per token (a few KiB), which is left out.
        """
        return sum(self.block_active_bytes) + self.output_bytes


_INPUT_PARTS = frozenset({"position_embd", "token_embd", "token_norm_embd", "token_types"})
_OUTPUT_PARTS = frozenset(
    {"cls", "output", "output_norm", "altup_proj", "altup_unembd_proj", "per_layer_token_embd",
     "per_layer_model_proj", "per_layer_proj_norm"}
)
_VISION_PREFIXES = ("v.", "mm.", "s.")
_PER_LAYER_PARTS = frozenset({"rope_freqs", "rope_factors_long", "rope_factors_short"})
_FIRST_NUMBER = re.compile(r"\d+")


def geometry_from_tensors(
    name: str,
    shape: ModelShape,
    tensors: Iterable[TensorInfo],
    file_size: int | None = None,
    rules: EngineRules | None = None,
    notes: tuple[str, ...] = (),
) -> ModelGeometry:
    """Groups tensor bytes into Ollama's layers.

    Mirrors ml/backend/ggml/ggml.go (New): names with a token_embd-like part are inputs on the CPU;
    output/output_norm/cls (and vision tensors) form the output layer; rope frequency tables are
    copied into every block; any other name belongs to the block of the first number in it, and
    names without a number stay on the CPU with the inputs. When the GGUF has no ``output`` tensor,
    the engine creates a second copy of token_embd as the output layer's weight.
    """
    blocks = [0] * shape.block_count
    active = [0] * shape.block_count
    largest = [0] * shape.block_count
    inputs = 0
    output = 0
    token_embd_weight = 0
    has_output_tensor = False
    expert_share = shape.expert_used_count / shape.expert_count if shape.is_moe else 1.0
    listed_bytes = 0
    tensors = tuple(tensors)
    for tensor in tensors:
        size = tensor.nbytes
        if tensor.ggml_type == "BF16" and tensor.name.endswith("_exps.bias"):
            # ml/backend/ggml/ggml.go New: expert biases are converted to F32 (add_ids needs it).
            size *= 2
        listed_bytes += size
        parts = set(tensor.name.split("."))
        if parts & _INPUT_PARTS:
            inputs += size
            if tensor.name == "token_embd.weight":
                token_embd_weight = size
        elif parts & _OUTPUT_PARTS or tensor.name.startswith(_VISION_PREFIXES):
            output += size
            has_output_tensor |= tensor.name.startswith("output.")
        elif parts & _PER_LAYER_PARTS:
            for block in range(shape.block_count):
                blocks[block] += size
                active[block] += size
                largest[block] = max(largest[block], size)
        elif (number := _FIRST_NUMBER.search(tensor.name)) is not None:
            block = int(number.group())
            if block >= shape.block_count:
                raise ValueError(f"{name}: tensor {tensor.name} is past block_count {shape.block_count}")
            blocks[block] += size
            largest[block] = max(largest[block], size)
            active[block] += round(size * expert_share) if is_routed_expert(tensor.name) else size
        else:
            inputs += size
    if not has_output_tensor:
        output += token_embd_weight
    return ModelGeometry(
        **_shape_fields(shape),
        name=name,
        block_weight_bytes=tuple(blocks),
        block_active_bytes=tuple(active),
        block_largest_tensor_bytes=tuple(largest),
        token_embd_bytes=inputs,
        output_bytes=output,
        file_size=file_size if file_size is not None else listed_bytes,
        rules=rules,
        notes=notes,
        tensors=tensors,
    )


def is_routed_expert(name: str) -> bool:
    """A tensor of the routed experts (``ffn_*_exps``), of which a token reads only the used share."""
    return "_exps" in name


def _shape_fields(shape: ModelShape) -> dict[str, object]:
    return {field: getattr(shape, field) for field in ModelShape.__dataclass_fields__}
