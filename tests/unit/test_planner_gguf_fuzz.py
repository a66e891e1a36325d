"""The GGUF header reader against hostile input: whatever the bytes, the planner raises only its own
clear errors (GGUFError, or ValueError from sizing) and never another exception.

Inputs are real headers (written with the gguf package) truncated, bit-flipped and spliced, plus
headers built field by field with absurd counts, lengths, dimensions and unknown type ids.
"""

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ollama_gpu.planner.gguf_geometry import geometry_from_header
from ollama_gpu.planner.gguf_header import GGUFError, NeedMoreBytes, parse_header, read_header
from ollama_gpu.planner.placement import place
from tests.unit.test_planner_gguf import LLAMA_META, MOE_META, moe_tensors, write_gguf

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def real_headers(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    llama = [("token_embd.weight", "F32", (64, 100))] + [(f"blk.{b}.attn_q.weight", "Q8_0", (64, 64)) for b in range(3)]
    files = [write_gguf(root / "llama.gguf", "llama", LLAMA_META, llama), write_gguf(root / "moe.gguf", "qwen3moe", MOE_META, moe_tensors())]
    return [path.read_bytes() for path in files]


def plan_from(data: bytes, *, complete: bool = True) -> None:
    """The whole path a registry read takes: parse, build the geometry, place on a small GPU."""
    try:
        header = parse_header(data, complete=complete)
    except NeedMoreBytes:
        assert not complete
        return
    geometry = geometry_from_header(header, "fuzz", file_size=len(data))
    place(geometry, gpu_free_vram=2**30, gpu_overhead=0, num_ctx=512, kv_cache_type="f16", flash_attention=True, num_parallel=1)


def only_clear_errors(data: bytes, *, complete: bool = True) -> None:
    try:
        plan_from(data, complete=complete)
    except ValueError as error:  # GGUFError, UnpredictableModel and sizing errors are all ValueErrors with a message
        assert str(error)


def test_real_headers_parse(real_headers):
    for data in real_headers:
        plan_from(data)


@FUZZ
@given(st.data())
def test_truncated_headers(real_headers, data):
    blob = data.draw(st.sampled_from(real_headers))
    cut = data.draw(st.integers(0, len(blob)))
    only_clear_errors(blob[:cut])
    only_clear_errors(blob[:cut], complete=False)


@FUZZ
@given(st.data())
def test_mutated_headers(real_headers, data):
    blob = bytearray(data.draw(st.sampled_from(real_headers)))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, min(len(blob), 2048) - 1))
        blob[position] = data.draw(st.integers(0, 255))
    only_clear_errors(bytes(blob))


def u32(value):
    return struct.pack("<I", value)


def u64(value):
    return struct.pack("<Q", value)


def gguf_string(text: bytes):
    return u64(len(text)) + text


@FUZZ
@given(
    version=st.integers(0, 2**32 - 1),
    tensor_count=st.one_of(st.integers(0, 4), st.integers(0, 2**64 - 1)),
    kv_count=st.one_of(st.integers(0, 4), st.integers(0, 2**64 - 1)),
    value_type=st.integers(0, 2**32 - 1),
    n_dims=st.one_of(st.integers(0, 5), st.integers(0, 2**32 - 1)),
    dim=st.one_of(st.integers(0, 64), st.integers(0, 2**64 - 1)),
    type_id=st.integers(0, 2**32 - 1),
    offset=st.one_of(st.just(0), st.integers(0, 2**64 - 1)),
    tail=st.binary(max_size=64),
)
def test_built_headers_with_absurd_fields(version, tensor_count, kv_count, value_type, n_dims, dim, type_id, offset, tail):
    arch = gguf_string(b"general.architecture") + u32(8) + gguf_string(b"llama")
    odd = gguf_string(b"llama.block_count") + u32(value_type) + u64(dim)
    tensor = gguf_string(b"blk.0.attn_q.weight") + u32(n_dims) + b"".join(u64(dim) for _ in range(min(n_dims, 6))) + u32(type_id) + u64(offset)
    data = b"GGUF" + u32(version) + u64(tensor_count) + u64(kv_count) + arch + odd + tensor + tail
    only_clear_errors(data)
    only_clear_errors(data, complete=False)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes(blob):
    only_clear_errors(blob)
    only_clear_errors(b"GGUF" + blob)


def test_named_errors():
    with pytest.raises(GGUFError, match="not a GGUF file"):
        parse_header(b"GGML" + bytes(20), complete=True)
    with pytest.raises(GGUFError, match="version 1 is not supported"):
        parse_header(b"GGUF" + u32(1) + bytes(16), complete=True)
    with pytest.raises(GGUFError, match="tensor count is 18446744073709551615"):
        parse_header(b"GGUF" + u32(3) + u64(2**64 - 1) + u64(0), complete=True)
    with pytest.raises(GGUFError, match="file is truncated: it ends at byte 10 inside the GGUF header"):
        parse_header(b"GGUF" + u32(3) + b"\0\0", complete=True)
    with pytest.raises(NeedMoreBytes):
        parse_header(b"GGUF" + u32(3) + b"\0\0")


def test_read_header_grows_its_reads(real_headers):
    blob = real_headers[1]
    reads = []

    def read_at(offset, size):
        reads.append((offset, size))
        return blob[offset:offset + size]

    header = read_header(read_at, first_read=64)
    assert header.metadata["general.architecture"] == "qwen3moe"
    assert reads[0] == (0, 64) and len(reads) > 1
    assert all(reads[i + 1][0] == reads[i][0] + reads[i][1] for i in range(len(reads) - 1))
