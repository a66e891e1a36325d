"""Writes full-size GGUF files with random weights, fast enough to make 30 GB on the GPU machine.

Speed and placement depend on tensor shapes and types, not on the values, so the data is a random
pattern of well-formed quantization blocks repeated through each tensor (different start per
tensor): no NaN/Inf scales (random bytes in an f16 scale field would give some), norms at 1.0 so
activations keep their size, the MoE router random so experts are picked unevenly, like a trained
router. Writing repeats one pattern buffer, so the file is written at disk speed (about a minute
for 30 GB) instead of at random-number-generator speed.

The writer is this project's own (GGUF v3 as ggml documents it): the GPU machine has no ``gguf``
package, and streaming 30 GB through it would need the whole tensor in memory.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import BinaryIO, Union

import numpy as np

from ollama_gpu.planner.geometry import GGML_TYPE_LAYOUT, TensorInfo

ALIGNMENT = 32
# ggml.h enum ggml_type values for the types the lab writes.
GGML_TYPE_IDS = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "BF16": 30}
_PATTERN_BYTES = 32 * 1024 * 1024

# GGUF metadata value types (gguf.md).
_UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY, _UINT64 = 4, 5, 6, 7, 8, 9, 10

MetadataValue = Union[str, int, float, bool, list]


@dataclass(frozen=True)
class Typed:
    """A metadata integer with an explicit GGUF type (most keys are uint32, some int32)."""

    value: int | list[int]
    gguf_type: int


def uint32(value: int) -> Typed:
    return Typed(value, _UINT32)


def int32_array(values: list[int]) -> Typed:
    return Typed(values, _INT32)


def _string(text: str) -> bytes:
    encoded = text.encode()
    return struct.pack("<Q", len(encoded)) + encoded


def _scalar(value: MetadataValue, gguf_type: int) -> bytes:
    if gguf_type == _STRING:
        return _string(value)
    fmt = {_UINT32: "<I", _INT32: "<i", _FLOAT32: "<f", _BOOL: "<?", _UINT64: "<Q"}[gguf_type]
    return struct.pack(fmt, value)


def _type_of(value: MetadataValue) -> int:
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        return _UINT32
    if isinstance(value, float):
        return _FLOAT32
    if isinstance(value, str):
        return _STRING
    raise TypeError(f"no GGUF type for {value!r}")


def _metadata(key: str, value: MetadataValue | Typed) -> bytes:
    out = _string(key)
    if isinstance(value, Typed):
        raw, gguf_type = value.value, value.gguf_type
    else:
        raw, gguf_type = value, None
    if isinstance(raw, list):
        element = gguf_type or (_type_of(raw[0]) if raw else _STRING)
        out += struct.pack("<IIQ", _ARRAY, element, len(raw))
        if element == _STRING:
            out += b"".join(_string(item) for item in raw)
        elif element in (_UINT32, _INT32, _FLOAT32):
            dtype = {_UINT32: "<u4", _INT32: "<i4", _FLOAT32: "<f4"}[element]
            out += np.asarray(raw, dtype=dtype).tobytes()
        else:
            out += b"".join(_scalar(item, element) for item in raw)
        return out
    gguf_type = gguf_type or _type_of(raw)
    return out + struct.pack("<I", gguf_type) + _scalar(raw, gguf_type)


def _pattern(ggml_type: str, rng: np.random.Generator) -> bytes:
    """Random, well-formed blocks of ``ggml_type``: random quants, small finite scales."""
    values_per_block, block_bytes = GGML_TYPE_LAYOUT[ggml_type]
    count = _PATTERN_BYTES // block_bytes
    blocks = rng.integers(0, 256, size=(count, block_bytes), dtype=np.uint8)

    def f16(value: float) -> np.ndarray:
        return np.full(count, value, dtype="<f2").view(np.uint8).reshape(count, 2)

    # Scales are chosen so every type's weights stay within about ±0.12, like Q8_0's 2^-10 x 127:
    # larger random weights grow the activations layer by layer until CUDA's f16 intermediates
    # overflow (seen on the GPU machine: NaN logits with Q4_K/Q6_K scales 8x these).
    if ggml_type in ("Q8_0", "Q4_0"):  # block_q8_0 / block_q4_0: f16 d, then quants
        blocks[:, 0:2] = f16(2.0**-10)
    elif ggml_type in ("Q4_K", "Q5_K"):  # f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, quants
        # A weight is d*sc*q - dmin*m. With random scales and mins every weight had a positive mean
        # (about +0.03), so activations grew coherently with the width until CUDA's f16
        # intermediates overflowed in fully resident runs (the lab's HTTP 500s). Equal scale and
        # min bytes (0x33: sc = m = 51 for four sub-blocks, 3 for the other four) with dmin = d
        # times the quants' mean (7.5 for 4 bits, 15.5 for 5) centre every sub-block on zero.
        d = 2.0**-13
        blocks[:, 0:2] = f16(d)
        blocks[:, 2:4] = f16(d * (7.5 if ggml_type == "Q4_K" else 15.5))
        blocks[:, 4:16] = 0x33
    elif ggml_type == "Q6_K":  # block_q6_K: ql, qh, int8 scales, then f16 d last; quants -32..31
        blocks[:, 192:208] = rng.integers(1, 17, size=(count, 16), dtype=np.uint8)
        blocks[:, 208:210] = f16(2.0**-12)
    elif ggml_type in ("F16", "BF16", "F32"):
        dtype = {"F16": "<f2", "F32": "<f4"}.get(ggml_type)
        if dtype is None:
            raise ValueError("BF16 weights are not generated by the lab")
        floats = (rng.standard_normal(_PATTERN_BYTES // np.dtype(dtype).itemsize) * 0.02).astype(dtype)
        return floats.tobytes()
    else:
        raise ValueError(f"the lab cannot generate {ggml_type} data")
    return blocks.tobytes()


def _write_repeated(out: BinaryIO, pattern: bytes, size: int, start: int, step: int) -> None:
    view = memoryview(pattern)
    offset = (start * step) % len(pattern)
    offset -= offset % step
    while size > 0:
        chunk = view[offset:offset + size]
        out.write(chunk)
        size -= len(chunk)
        offset = 0


def write_gguf(
    path: str | os.PathLike[str],
    metadata: Mapping[str, MetadataValue | Typed],
    tensors: Iterable[TensorInfo],
    *,
    seed: int = 0,
) -> int:
    """Writes the file and returns its size. Norm vectors (F32 1-D ``*norm*``) are 1.0."""
    tensors = list(tensors)
    rng = np.random.default_rng(seed)
    header = bytearray(b"GGUF")
    header += struct.pack("<IQQ", 3, len(tensors), len(metadata) + 1)
    for key, value in {**metadata, "general.alignment": uint32(ALIGNMENT)}.items():
        header += _metadata(key, value)
    offsets, position = [], 0
    for tensor in tensors:
        offsets.append(position)
        position += -(-tensor.nbytes // ALIGNMENT) * ALIGNMENT
    for tensor, offset in zip(tensors, offsets):
        header += _string(tensor.name)
        header += struct.pack("<I", len(tensor.shape))
        header += struct.pack(f"<{len(tensor.shape)}Q", *tensor.shape)
        header += struct.pack("<IQ", GGML_TYPE_IDS[tensor.ggml_type.upper()], offset)
    header += b"\0" * (-len(header) % ALIGNMENT)

    patterns: dict[str, bytes] = {}
    ones = np.ones(1 << 20, dtype="<f4").tobytes()
    with open(path, "wb") as out:
        out.write(header)
        for index, tensor in enumerate(tensors):
            kind = tensor.ggml_type.upper()
            is_norm = kind == "F32" and len(tensor.shape) == 1 and "norm" in tensor.name
            if is_norm:
                pattern, step = ones, 4
            else:
                if kind not in patterns:
                    patterns[kind] = _pattern(kind, rng)
                pattern, step = patterns[kind], GGML_TYPE_LAYOUT[kind][1]
            _write_repeated(out, pattern, tensor.nbytes, index * 7919, step)
            out.write(b"\0" * (-tensor.nbytes % ALIGNMENT))
        return out.tell()
