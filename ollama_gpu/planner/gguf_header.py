"""A GGUF header parser that works on the first bytes of a file, so a model can be planned from a
few megabytes read over HTTP instead of a 30 GB download.

The layout is the GGUF spec's (ggml/docs/gguf.md; Ollama 0.24.0 reads it in fs/ggml/gguf.go):
magic "GGUF", version, tensor count, metadata count, the metadata key/value pairs, then one
record per tensor (name, dimensions, ggml type id, data offset), padded to general.alignment.

Every failure is a GGUFError naming what is wrong and where; a header that runs past the bytes
given raises NeedMoreBytes with the size to read next, so callers can fetch more and parse again.
Whatever the input, nothing else is raised: tests fuzz this module with random and mutated headers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

GGUF_MAGIC = b"GGUF"
# fs/ggml/gguf.go reads versions 1-3; version 1 used 32-bit counts and lengths and predates every
# model an Ollama registry serves today, so it is refused by name rather than half-supported.
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# GGML_MAX_DIMS in ggml.h.
MAX_DIMS = 4
# No published model comes near these; they stop a corrupt count from allocating without bound.
MAX_TENSORS = 1 << 20
MAX_METADATA = 1 << 16
MAX_ELEMENTS = 1 << 62
# A header (tokenizer included) larger than this is refused: the largest vocabularies published
# (262,144 tokens, Gemma 3) give headers of about 10 MB.
MAX_HEADER_BYTES = 64 * 1024 * 1024
# Like Ollama's LoadModel(path, 1024) (server/sched.go), arrays longer than this keep only their
# element type and length: placement needs the vocabulary size, not the tokens.
KEEP_ARRAY_VALUES = 1024

# ggml type ids (ggml.h enum ggml_type in the pinned engine's vendored ggml). Ids 5, 31-33 and
# 36-38 are types ggml removed; 4 is kept because Ollama's own gpt-oss files store MXFP4 under it
# (ml/backend/ggml/ggml.go New remaps kind 4 to 39; fs/ggml/ggml.go sizes both alike).
GGML_TYPE_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 4: "MXFP4", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
    9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
    16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
    22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
    29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
}
# Types newer than the pinned engine's ggml (GGML_TYPE_COUNT = 40 in 0.24.0), named so a refusal
# can say which one it met (gguf-py 0.19 GGMLQuantizationType).
NEWER_GGML_TYPES: dict[int, str] = {40: "NVFP4", 41: "Q1_0"}

_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9


class GGUFError(ValueError):
    """The bytes are not a GGUF header the planner can read; the message says why."""


class NotGGUF(GGUFError):
    """The bytes do not start with the GGUF magic: some other file."""


class NeedMoreBytes(Exception):
    """The header continues past the bytes given; ``size`` is how many bytes to read in all."""

    def __init__(self, size: int):
        super().__init__(f"GGUF header needs at least {size} bytes")
        self.size = size


def ggml_type_name(type_id: int) -> str:
    """The name the planner's size table uses; unknown ids get a name that says they are unknown."""
    if type_id in GGML_TYPE_NAMES:
        return GGML_TYPE_NAMES[type_id]
    if type_id in NEWER_GGML_TYPES:
        return f"{NEWER_GGML_TYPES[type_id]} (ggml type {type_id}, newer than Ollama 0.24.0's ggml)"
    return f"unknown ggml type {type_id}"


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too long to keep: its element type and length only."""

    element_type: int
    length: int


@dataclass(frozen=True)
class TensorRecord:
    """One tensor as the header lists it: ggml dimensions (ne0 first) and the raw type id."""

    name: str
    dims: tuple[int, ...]
    type_id: int
    offset: int

    @property
    def type_name(self) -> str:
        return ggml_type_name(self.type_id)


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorRecord, ...]
    # Where tensor data starts: the end of the tensor records padded to general.alignment.
    data_offset: int
    alignment: int = DEFAULT_ALIGNMENT
    notes: tuple[str, ...] = field(default=())

    def array_length(self, key: str) -> int | None:
        value = self.metadata.get(key)
        if isinstance(value, ArrayInfo):
            return value.length
        if isinstance(value, list):
            return len(value)
        return None


class _Cursor:
    def __init__(self, data: bytes, complete: bool):
        self.data, self.position, self.complete = data, 0, complete

    def take(self, size: int, what: str) -> bytes:
        end = self.position + size
        if end > MAX_HEADER_BYTES:
            raise GGUFError(f"{what} at byte {self.position} runs past {MAX_HEADER_BYTES} bytes: not a header the planner reads")
        if end > len(self.data):
            if self.complete:
                raise GGUFError(
                    f"file is truncated: it ends at byte {len(self.data)} inside the GGUF header ({what} at byte {self.position})"
                )
            raise NeedMoreBytes(end)
        chunk = self.data[self.position:end]
        self.position = end
        return chunk

    def unpack(self, fmt: str, size: int, what: str) -> Any:
        return struct.unpack(fmt, self.take(size, what))[0]

    def count(self, what: str, limit: int) -> int:
        value = self.unpack("<Q", 8, what)
        if value > limit:
            raise GGUFError(f"{what} is {value}, more than the {limit} any real model has: the header is corrupt")
        return value

    def string(self, what: str) -> str:
        length = self.unpack("<Q", 8, f"length of {what}")
        if length > MAX_HEADER_BYTES:
            raise GGUFError(f"{what} at byte {self.position - 8} claims {length} bytes: the header is corrupt")
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(f"{what} at byte {self.position - length} is not UTF-8") from None


def _value(cursor: _Cursor, value_type: int, key: str, depth: int = 0) -> Any:
    if value_type in _SCALARS:
        fmt, size = _SCALARS[value_type]
        return cursor.unpack(fmt, size, f"value of {key}")
    if value_type == _STRING:
        return cursor.string(f"value of {key}")
    if value_type == _ARRAY:
        if depth:
            raise GGUFError(f"metadata {key} nests arrays, which no GGUF reader of the pinned engine accepts")
        element_type = cursor.unpack("<I", 4, f"array type of {key}")
        length = cursor.count(f"length of array {key}", MAX_HEADER_BYTES)
        if element_type not in _SCALARS and element_type not in (_STRING, _ARRAY):
            raise GGUFError(f"metadata {key} is an array of unknown value type {element_type}")
        if element_type in _SCALARS:
            fmt, size = _SCALARS[element_type]
            raw = cursor.take(size * length, f"array {key}")
            if length > KEEP_ARRAY_VALUES:
                return ArrayInfo(element_type, length)
            return [item[0] for item in struct.iter_unpack(fmt, raw)]
        items = [_value(cursor, element_type, key, depth + 1) for _ in range(length)]
        return ArrayInfo(element_type, length) if length > KEEP_ARRAY_VALUES else items
    raise GGUFError(f"metadata {key} has unknown value type {value_type}")


def parse_header(data: bytes, *, complete: bool = False) -> GGUFHeader:
    """Parses the header at the start of ``data``.

    ``complete`` says ``data`` is the whole file, so running out of bytes is a truncated file
    (GGUFError) rather than a request for more (NeedMoreBytes).
    """
    cursor = _Cursor(data, complete)
    if complete and len(data) < len(GGUF_MAGIC):
        raise NotGGUF(f"is not a GGUF file: it has {len(data)} bytes")
    magic = cursor.take(4, "magic")
    if magic != GGUF_MAGIC:
        raise NotGGUF(f"is not a GGUF file: it starts with {magic!r}, not {GGUF_MAGIC!r}")
    version = cursor.unpack("<I", 4, "version")
    if version not in SUPPORTED_VERSIONS:
        raise GGUFError(f"GGUF version {version} is not supported (the planner reads versions 2 and 3)")
    tensor_count = cursor.count("tensor count", MAX_TENSORS)
    metadata_count = cursor.count("metadata count", MAX_METADATA)

    metadata: dict[str, Any] = {}
    for index in range(metadata_count):
        key = cursor.string(f"metadata key #{index}")
        value_type = cursor.unpack("<I", 4, f"type of {key}")
        metadata[key] = _value(cursor, value_type, key)

    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment & (alignment - 1):
        raise GGUFError(f"general.alignment {alignment!r} is not a positive power of two")

    tensors = []
    for index in range(tensor_count):
        name = cursor.string(f"name of tensor #{index}")
        n_dims = cursor.unpack("<I", 4, f"dimension count of {name}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise GGUFError(f"tensor {name} has {n_dims} dimensions; ggml allows 1 to {MAX_DIMS}")
        dims = tuple(cursor.unpack("<Q", 8, f"dimensions of {name}") for _ in range(n_dims))
        elements = 1
        for dim in dims:
            elements *= dim
        if elements > MAX_ELEMENTS:
            raise GGUFError(f"tensor {name} has dimensions {dims}: more elements than any file can hold")
        type_id = cursor.unpack("<I", 4, f"type of {name}")
        offset = cursor.unpack("<Q", 8, f"offset of {name}")
        if offset % alignment:
            raise GGUFError(f"tensor {name} starts at data offset {offset}, not a multiple of the alignment {alignment}")
        tensors.append(TensorRecord(name, dims, type_id, offset))

    names = [tensor.name for tensor in tensors]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise GGUFError(f"tensor {duplicate} is listed twice")
    data_offset = -(-cursor.position // alignment) * alignment
    return GGUFHeader(version, metadata, tuple(tensors), data_offset, alignment)


ReadAt = Callable[[int, int], bytes]


def read_header(read_at: ReadAt, *, first_read: int = 2 * 1024 * 1024) -> GGUFHeader:
    """Reads just enough of a file through ``read_at(offset, size)`` to parse its header.

    ``read_at`` returns fewer bytes than asked only at the end of the file. Reads grow by doubling,
    so a 10 MB header costs a few reads and a 100 KB one a single read.
    """
    data = b""
    want = first_read
    while True:
        if want > len(data):
            chunk = read_at(len(data), want - len(data))
            data += chunk
            at_end = len(data) < want
        else:
            at_end = False
        try:
            return parse_header(data, complete=at_end)
        except NeedMoreBytes as more:
            want = min(max(more.size, 2 * len(data)), MAX_HEADER_BYTES)
