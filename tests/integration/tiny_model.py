"""A tiny random-weight GGUF that a real Ollama server imports, loads and generates from.

It has the production model's architecture, `qwen3moe` (Qwen3-30B-A3B), at toy size: 4 blocks,
128-wide embeddings, 4 query heads and 2 KV heads of 64 dims, 8 experts with 2 active. The
architecture matters more than it seems: Ollama 0.24 runs `qwen3moe` on its own Go engine, the one
whose placement log lines (`msg="model weights" device=...`, `offloaded N/M layers`) and KV-cache
rules the project depends on, whereas a `llama` model is handed to the bundled llama.cpp runner,
which logs and places differently. `/api/show` then reports the same `qwen3moe.*` keys as for the
real model. The file is about 3 MB; its output is nonsense, which is all the tests need.

The tokenizer is GPT-2-style byte-level BPE, what Ollama's qwen3 code reads:
- every byte has a token, so any text tokenizes;
- every word of `WORDS` with its leading space is one token, so `prompt_of_tokens(n)` is text of
  exactly n tokens; no BOS is added (as for the real Qwen3), so `prompt_eval_count` is n (Ollama
  0.24 counts prompt tokens served from its cache too; only prompt_eval_duration shrinks).

Run `python -m tests.integration.tiny_model OUT.gguf` to write the file.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType, TokenType

from ollama_gpu.gpulab.models import byte_symbols

ARCHITECTURE = "qwen3moe"
CONTEXT_LENGTH = 32768
EMBEDDING_LENGTH = 128
BLOCK_COUNT = 4
HEAD_COUNT = 4
HEAD_COUNT_KV = 2
# A multiple of 32: a q8_0 KV cache quantizes each head's row in blocks of 32 and aborts otherwise.
HEAD_DIM = 64
EXPERT_COUNT = 8
EXPERT_USED_COUNT = 2
EXPERT_FEED_FORWARD_LENGTH = 64
SEED = 20240

END_OF_TEXT = "<|endoftext|>"

WORDS = (
    "the of and to in is was for on that with as by at from it be are this an or which have had"
    " not but were they all one their has been more when there can who we will would about out so"
    " up what time its into only other new some could these two may first then do any like my now"
    " over such our man me even most made after also did many before must through back years where"
    " much your way well down should because each just those people how too little state good very"
    " make world still own see men work long get here between both life being under never day same"
    " another know while last might us great old year off come since against go came right used"
    " take three small large place found house water light word number sound point city tree cross"
    " farm hard start story saw far sea draw left late run open seem together next white children"
    " begin got walk example ease paper group always music mark often letter until mile river car"
    " feet care second book carry took science eat room friend began idea fish mountain stop once"
    " base hear horse cut sure watch color face wood main enough plain girl usual young ready above"
    " ever red list though feel talk bird soon body dog family direct pose leave song measure door"
    " product black short numeral class wind question happen complete ship area half rock order fire"
    " south problem piece told knew pass top whole king space heard best hour better true"
).split()


_BYTE_SYMBOLS = byte_symbols()


def _byte_to_symbol(byte: int) -> str:
    return _BYTE_SYMBOLS[byte]


def _encode(text: str) -> str:
    return "".join(_byte_to_symbol(byte) for byte in text.encode())


def _vocabulary() -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges: the 256 byte symbols, then every prefix of each spaced word
    ("Ġc", "Ġca", "Ġcat") so that BPE, which only merges into existing tokens, can build the
    word; the special token comes last."""
    tokens = [_byte_to_symbol(byte) for byte in range(256)]
    merges: list[str] = []
    known = set(tokens)
    for word in dict.fromkeys(WORDS):
        symbols = _encode(" " + word)
        for end in range(2, len(symbols) + 1):
            prefix = symbols[:end]
            if prefix not in known:
                known.add(prefix)
                tokens.append(prefix)
                merges.append(f"{symbols[: end - 1]} {symbols[end - 1]}")
    types = [int(TokenType.NORMAL)] * len(tokens)
    tokens.append(END_OF_TEXT)
    types.append(int(TokenType.CONTROL))
    return tokens, types, merges


def prompt_of_tokens(count: int) -> str:
    """English-looking text that the tiny model's tokenizer splits into exactly `count` tokens."""
    words = itertools.islice(itertools.cycle(dict.fromkeys(WORDS)), count)
    return "".join(" " + word for word in words)


def _tensors(vocab_size: int) -> dict[str, np.ndarray]:
    """Small random weights. Norms and the expert router are f32 (the router is f32 in the real
    model too), matrices f16. Shapes are numpy order, [out, in]; gguf reverses them to ggml's."""
    rng = np.random.default_rng(SEED)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float16)

    def norm(width: int) -> np.ndarray:
        return np.ones(width, dtype=np.float32)

    query_width, kv_width = HEAD_COUNT * HEAD_DIM, HEAD_COUNT_KV * HEAD_DIM
    tensors = {"token_embd.weight": weights(vocab_size, EMBEDDING_LENGTH)}
    for block in range(BLOCK_COUNT):
        prefix = f"blk.{block}"
        tensors |= {
            f"{prefix}.attn_norm.weight": norm(EMBEDDING_LENGTH),
            f"{prefix}.attn_q.weight": weights(query_width, EMBEDDING_LENGTH),
            f"{prefix}.attn_k.weight": weights(kv_width, EMBEDDING_LENGTH),
            f"{prefix}.attn_v.weight": weights(kv_width, EMBEDDING_LENGTH),
            f"{prefix}.attn_q_norm.weight": norm(HEAD_DIM),
            f"{prefix}.attn_k_norm.weight": norm(HEAD_DIM),
            f"{prefix}.attn_output.weight": weights(EMBEDDING_LENGTH, query_width),
            f"{prefix}.ffn_norm.weight": norm(EMBEDDING_LENGTH),
            f"{prefix}.ffn_gate_inp.weight": weights(EXPERT_COUNT, EMBEDDING_LENGTH).astype(np.float32),
            f"{prefix}.ffn_gate_exps.weight": weights(EXPERT_COUNT, EXPERT_FEED_FORWARD_LENGTH, EMBEDDING_LENGTH),
            f"{prefix}.ffn_up_exps.weight": weights(EXPERT_COUNT, EXPERT_FEED_FORWARD_LENGTH, EMBEDDING_LENGTH),
            f"{prefix}.ffn_down_exps.weight": weights(EXPERT_COUNT, EMBEDDING_LENGTH, EXPERT_FEED_FORWARD_LENGTH),
        }
    # Not tied to token_embd, as in the real model, so placement has an output layer to place.
    tensors |= {
        "output_norm.weight": norm(EMBEDDING_LENGTH),
        "output.weight": weights(vocab_size, EMBEDDING_LENGTH),
    }
    return tensors


def write_tiny_gguf(path: str | Path) -> Path:
    """Write the tiny model to `path` and return it."""
    path = Path(path)
    tokens, types, merges = _vocabulary()
    end_of_text_id = tokens.index(END_OF_TEXT)
    writer = GGUFWriter(str(path), ARCHITECTURE)
    writer.add_name("tiny-test-qwen3moe")
    writer.add_file_type(LlamaFileType.MOSTLY_F16)
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(EMBEDDING_LENGTH)
    writer.add_block_count(BLOCK_COUNT)
    # Unused by the MoE blocks, but real qwen3moe files carry it (3 x embedding) and readers of
    # /api/show may expect it.
    writer.add_feed_forward_length(3 * EMBEDDING_LENGTH)
    writer.add_head_count(HEAD_COUNT)
    writer.add_head_count_kv(HEAD_COUNT_KV)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_expert_count(EXPERT_COUNT)
    writer.add_expert_used_count(EXPERT_USED_COUNT)
    writer.add_expert_feed_forward_length(EXPERT_FEED_FORWARD_LENGTH)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(end_of_text_id)
    writer.add_eos_token_id(end_of_text_id)
    writer.add_pad_token_id(end_of_text_id)
    writer.add_add_bos_token(False)

    for name, data in _tensors(len(tokens)).items():
        raw_dtype = GGMLQuantizationType.F16 if data.dtype == np.float16 else GGMLQuantizationType.F32
        writer.add_tensor(name, data, raw_dtype=raw_dtype)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.integration.tiny_model OUT.gguf", file=sys.stderr)
        return 2
    print(write_tiny_gguf(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
