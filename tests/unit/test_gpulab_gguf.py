"""The lab's GGUF writer against the reference reader (the gguf package), on scaled-down models.

Full-size files are written only on the GPU machine; here each lab model keeps one block, a small
vocabulary and (MoE) 8 experts, which exercises every tensor type and metadata key the full files use.
"""

import numpy as np
import pytest
from gguf import GGUFReader

from ollama_gpu.gpulab.gguf_writer import write_gguf
from ollama_gpu.gpulab.models import MODELS, prompt_text, scaled_down, vocabulary
from ollama_gpu.planner.gguf_geometry import geometry_from_gguf


@pytest.fixture(scope="module", params=sorted(MODELS))
def written(request, tmp_path_factory):
    model = scaled_down(MODELS[request.param], block_count=1, vocab_size=1024, expert_count=8)
    path = tmp_path_factory.mktemp("gguf") / f"{request.param}.gguf"
    size = write_gguf(path, model.metadata(), model.tensors(), seed=3)
    return model, path, size


def test_reader_sees_the_planned_geometry(written):
    model, path, size = written
    geometry = geometry_from_gguf(path, name=model.name)
    expected = model.geometry()
    assert path.stat().st_size == size
    assert geometry.block_weight_bytes == expected.block_weight_bytes
    assert (geometry.token_embd_bytes, geometry.output_bytes) == (expected.token_embd_bytes, expected.output_bytes)
    assert (geometry.architecture, geometry.head_dim, geometry.head_count_kv, geometry.vocab_size) == (
        model.shape.architecture, model.shape.head_dim, model.shape.head_count_kv, 1024)


def test_weights_are_finite_and_norms_are_one(written):
    _, path, _ = written
    reader = GGUFReader(path)
    for tensor in reader.tensors:
        raw = np.asarray(tensor.data)
        kind = tensor.tensor_type.name
        if kind == "F32":
            assert np.isfinite(raw).all()
            if "norm" in tensor.name:
                assert (raw == 1.0).all(), tensor.name
        elif kind == "Q8_0":  # 34-byte blocks: f16 scale first
            scales = raw.reshape(-1, 34)[:, :2].copy().view("<f2")
            assert (scales == 2.0**-10).all()
        elif kind == "Q4_K":  # f16 d and dmin first
            scales = raw.reshape(-1, 144)[:, :4].copy().view("<f2")
            assert np.isfinite(scales).all() and (scales > 0).all()
        elif kind == "Q6_K":  # int8 scales, then f16 d last: weights within ±2^-12 x 16 x 32
            blocks = raw.reshape(-1, 210)
            assert (blocks[:, 208:].copy().view("<f2") == 2.0**-12).all()
            assert (blocks[:, 192:208].view(np.int8) >= 1).all() and (blocks[:, 192:208] <= 16).all()
        else:
            pytest.fail(f"unexpected type {kind} for {tensor.name}")


def test_tokenizer_fills_the_vocabulary_and_every_prompt_character_is_a_token(written):
    model, path, _ = written
    reader = GGUFReader(path)
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert len(tokens) == 1024 == len(set(tokens))
    assert reader.fields["general.architecture"].contents() == model.shape.architecture
    text = prompt_text(500, seed=7)
    assert len(text) == 500 and text != prompt_text(500, seed=8)
    symbols = set(tokens)
    # GPT-2 byte symbols: letters stand for themselves, the space byte is "Ġ".
    assert all((ch if ch != " " else "Ġ") in symbols for ch in set(text))


def test_vocabulary_ends_with_its_control_token():
    tokens, types = vocabulary(300)
    assert len(tokens) == len(types) == 300
    assert (tokens[-1], types[-1]) == ("<|endoftext|>", 3)
    assert tokens[ord("a")] == "a" and tokens[ord(" ")] == "Ġ"


@pytest.mark.parametrize("ggml_type", ["Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K"])
def test_random_weights_are_centred_on_zero(ggml_type):
    """A weight mean far from zero grows the activations with the model's width until CUDA's f16
    intermediates overflow: fully resident Q4_K runs answered HTTP 500 (NaN logits) in the lab
    while every weight had a mean of about +0.03."""
    from gguf import GGMLQuantizationType, quants

    from ollama_gpu.gpulab.gguf_writer import GGML_TYPE_LAYOUT, _pattern

    _, block_bytes = GGML_TYPE_LAYOUT[ggml_type]
    data = np.frombuffer(_pattern(ggml_type, np.random.default_rng(3)), dtype=np.uint8)
    blocks = data[: 4000 * block_bytes]
    weights = quants.dequantize(blocks, getattr(GGMLQuantizationType, ggml_type))
    assert np.isfinite(weights).all()
    assert abs(weights.mean()) <= 0.15 * weights.std()
