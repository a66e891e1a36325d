"""Model geometry read from a GGUF file, or from what Ollama's /api/show reports for a pulled model.

Both paths end in geometry.geometry_from_tensors, so a GGUF on disk, the built-in catalog and a
model in Ollama's store are grouped and sized by the same rules. compare_with_model_info lets the
program check, after the pull, that the catalog entry it planned with matches what it got.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ollama_gpu.planner.architectures import EngineRules, Hyper, engine_for, engine_rules
from ollama_gpu.planner.geometry import ModelGeometry, ModelShape, TensorInfo, geometry_from_tensors
from ollama_gpu.planner.gguf_header import GGUFError, GGUFHeader, NotGGUF, read_header
from ollama_gpu.planner.llamacpp_estimate import estimate_inputs

# The deepest published models have a few hundred blocks; this bounds per-block tables built from
# a corrupt header.
MAX_BLOCKS = 4096


def _largest(value: Any, key: str = "value") -> int:
    """Some architectures store per-layer arrays (e.g. head_count_kv); placement needs the max."""
    items = value if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in items):
        raise ValueError(f"metadata {key} is {_shown(value)}, not a count")
    return max(items, default=0)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _shape_from_metadata(get: Callable[[str], Any], tensors: list[TensorInfo]) -> ModelShape:
    """Reads ``{arch}.*`` hyperparameters the way Ollama's fs/ggml KV accessors do."""
    architecture = get("general.architecture")
    if not architecture:
        raise ValueError("metadata has no general.architecture")
    if not isinstance(architecture, str):
        raise ValueError(f"metadata general.architecture is {_shown(architecture)}, not a name")

    def number(key: str, default: int | None = None) -> int:
        value = get(f"{architecture}.{key}")
        if value is None:
            if default is None:
                raise ValueError(f"metadata has no {architecture}.{key}")
            return default
        return _largest(value, f"{architecture}.{key}")

    block_count = number("block_count")
    if not 0 < block_count <= MAX_BLOCKS:
        raise ValueError(f"metadata {architecture}.block_count is {block_count}: a model has 1 to {MAX_BLOCKS} blocks")
    embedding_length = number("embedding_length")
    head_count = number("attention.head_count")
    embd = next((t for t in tensors if t.name == "token_embd.weight"), None)
    vocab_size = embd.shape[1] if embd is not None and len(embd.shape) > 1 else number("vocab_size", 0)
    return ModelShape(
        architecture=architecture,
        block_count=block_count,
        embedding_length=embedding_length,
        head_count=head_count,
        head_count_kv=number("attention.head_count_kv", head_count),
        # fs/ggml EmbeddingHeadCountK: key_length, else embedding_length / head_count.
        head_dim=number("attention.key_length", embedding_length // head_count if head_count else 0),
        context_length=number("context_length", 0),
        vocab_size=vocab_size,
        feed_forward_length=number("feed_forward_length", 0),
        expert_count=number("expert_count", 0),
        expert_used_count=number("expert_used_count", 0),
        expert_ff_length=number("expert_feed_forward_length", 0),
    )


def geometry_from_header(header: GGUFHeader, name: str, file_size: int | None = None) -> ModelGeometry:
    """Geometry from a parsed header; ``file_size`` (when known) is checked against the tensor data.

    Raises GGUFError for a header that contradicts itself or a file too short for its tensors,
    ValueError for a tensor type without a known size.
    """
    metadata = header.metadata
    tensors = [TensorInfo(t.name, t.type_name, t.dims) for t in header.tensors]
    if file_size is not None:
        end = header.data_offset + max((t.offset + info.nbytes for t, info in zip(header.tensors, tensors)), default=0)
        if end > file_size:
            raise GGUFError(
                f"the header lists tensor data up to byte {end} but the file has {file_size} bytes: it is truncated"
            )
    shape = _shape_from_metadata(metadata.get, tensors)
    rules = rules_from_metadata(metadata.get, shape, tensors, header.array_length("tokenizer.ggml.tokens"))
    return geometry_from_tensors(name, shape, tensors, file_size, rules=rules)


def rules_from_metadata(get: Callable[[str], Any], shape: ModelShape, tensors: list[TensorInfo], vocab: int | None) -> EngineRules:
    """The engine's rules for a model: its runner, per-block cache, or why it is refused."""
    hyper = Hyper.read(get, shape.architecture, shape.block_count, shape.embedding_length)
    estimate = None
    if engine_for(shape.architecture) == "llama.cpp":
        estimate = estimate_inputs(get, shape.architecture, tensors, vocab)
    return engine_rules(hyper, estimate)


def geometry_from_gguf(path: str | os.PathLike[str], name: str | None = None) -> ModelGeometry:
    """Geometry of a GGUF file, read from its header alone; a ValueError says what is wrong with it."""
    if not os.path.isfile(path):
        raise ValueError("is not a regular file")
    with open(path, "rb") as file:

        def read_at(offset: int, size: int) -> bytes:
            file.seek(offset)
            return file.read(size)

        try:
            header = read_header(read_at)
        except NotGGUF:
            raise
        except GGUFError as error:
            raise GGUFError(f"is truncated or damaged: {error}") from None
    return geometry_from_header(header, name or os.path.basename(os.fspath(path)), os.path.getsize(path))


def _tensors_from_show(tensors: Iterable[Mapping[str, Any]]) -> list[TensorInfo]:
    return [TensorInfo(t["name"], t["type"], tuple(int(d) for d in t["shape"])) for t in tensors]


def geometry_from_model_info(
    model_info: Mapping[str, Any], tensors: Iterable[Mapping[str, Any]], name: str = "pulled model"
) -> ModelGeometry:
    """Geometry from /api/show: ``model_info`` (GGUF metadata) and ``tensors`` (name/type/shape)."""
    tensor_infos = _tensors_from_show(tensors)
    shape = _shape_from_metadata(model_info.get, tensor_infos)
    return geometry_from_tensors(name, shape, tensor_infos)


def compare_with_model_info(
    geometry: ModelGeometry,
    model_info: Mapping[str, Any],
    tensors: Iterable[Mapping[str, Any]] | None = None,
) -> list[str]:
    """Mismatches between a planned geometry and what Ollama reports; empty when they agree.

    Without ``tensors`` only the hyperparameters are compared (vocab size then comes from
    ``{arch}.vocab_size`` when present); with them, the layer sizes are compared too.
    """
    tensor_infos = _tensors_from_show(tensors) if tensors is not None else []
    try:
        reported = _shape_from_metadata(model_info.get, tensor_infos)
    except ValueError as error:
        return [str(error)]
    mismatches = []
    for field in ModelShape.__dataclass_fields__:
        planned, actual = getattr(geometry, field), getattr(reported, field)
        if field == "vocab_size" and not actual:
            continue
        if planned != actual:
            mismatches.append(f"{field}: planned {planned}, Ollama reports {actual}")
    if tensors is not None:
        actual_geometry = geometry_from_tensors(geometry.name, reported, tensor_infos)
        for field in ("block_weight_bytes", "token_embd_bytes", "output_bytes"):
            planned, actual = getattr(geometry, field), getattr(actual_geometry, field)
            if planned != actual:
                mismatches.append(f"{field}: planned {_total(planned)} bytes, Ollama reports {_total(actual)}")
    return mismatches


def _total(value: int | tuple[int, ...]) -> int:
    return sum(value) if isinstance(value, tuple) else value
