"""Per architecture: which of Ollama 0.24.0's two runners loads a model and what its cache holds.

- llm/server.go NewLlamaServer: architectures in fs/ggml/ggml.go KV.OllamaEngineRequired run on
  Ollama's Go engine, which *measures* each layer's allocation; every other architecture runs on
  the llama.cpp runner, whose placement uses fs/ggml/ggml.go GGML.GraphSize *estimates* instead
  (llm/server.go llamaServer.Load). Both are deterministic given the GGUF header; the planner
  reproduces the Go engine's cache allocation and the llama.cpp runner's estimate.
- Go engine caches (kvcache/causal.go Causal.Init and Put): a block's K and V are
  [key width, cells] and [value width, cells] in the cache type. Full-attention blocks hold
  roundUp(num_ctx x parallel, 256) cells; sliding-window blocks hold
  roundUp(parallel x memory + num_batch, 256) where memory is the window (NewSWACache) or a fixed
  4096 (NewSWAMemCache, gpt-oss), one more with several sequences, and the full size again when
  that is not smaller than num_ctx.

Architectures whose cache the planner does not reproduce get a ``refusal``: the plan then gives
the weights per layer and says why it cannot give bytes for the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# fs/ggml/ggml.go KV.OllamaEngineRequired.
OLLAMA_ENGINE_ARCHITECTURES = frozenset(
    {
        "bert", "deepseek2", "deepseekocr", "gemma3", "gemma3n", "gemma4", "gptoss", "gpt-oss",
        "laguna", "llama4", "mistral3", "mllama", "nemotron_h", "nemotron_h_moe", "nemotron_h_omni",
        "nomic-bert", "olmo3", "qwen25vl", "qwen3", "qwen3moe", "qwen35", "qwen35moe", "qwen3next",
        "qwen3vl", "qwen3vlmoe", "glm4moelite", "glmocr", "lfm2", "lfm2moe",
    }
)
# server/sched.go Scheduler.load: these load with num_parallel 1 whatever OLLAMA_NUM_PARALLEL says.
SINGLE_SEQUENCE_ARCHITECTURES = frozenset(
    {
        "mllama", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "qwen3next", "lfm2", "lfm2moe",
        "nemotron_h", "nemotron_h_moe", "nemotron_h_omni",
    }
)
# Go-engine models whose cache is one plain kvcache.NewCausalCache with K/V of
# [key_length x kv heads] and [value_length x kv heads] (model/models/<arch>/model.go).
_PLAIN_CAUSAL = frozenset({"qwen3", "qwen3moe", "qwen3vl", "qwen3vlmoe", "qwen25vl", "mistral3"})
# Go-engine models with recurrent state (kvcache/recurrent.go): conv and SSM/delta states per
# sequence plus checkpoint copies, allocated lazily; the planner does not model them.
_RECURRENT = frozenset({"qwen3next", "qwen35", "qwen35moe", "lfm2", "lfm2moe", "nemotron_h", "nemotron_h_moe", "nemotron_h_omni"})
SWA_MEMORY_GPTOSS = 4096  # model/models/gptoss/model.go: NewSWAMemCache(window, 4096, ...)
GEMMA3_GLOBAL_EVERY = 6  # model/models/gemma3/model_text.go gemmaGlobalCacheCount
CACHE_PADDING = 256  # ml/backend/ggml/ggml.go Backend.CacheConfig, with and without flash attention


@dataclass(frozen=True)
class LayerCache:
    """What one block keeps per cell in the Go engine's cache: K [k_dim, heads, cells] and
    V [v_dim, heads, cells] (kvcache/causal.go Put). window 0 means full context."""

    k_dim: int
    v_dim: int
    heads: int
    window: int = 0
    window_memory: int = 0

    def cells(self, *, num_ctx: int, num_parallel: int, num_batch: int) -> int:
        """kvcache/causal.go Causal.Init, with capacity = num_ctx and maxBatch = num_batch."""
        full = round_up(num_parallel * num_ctx, CACHE_PADDING)
        if not self.window:
            return full
        memory = self.window_memory or self.window
        if num_parallel > 1:
            memory = max(memory, self.window + 1)
        if memory >= num_ctx:
            return full
        return round_up(num_parallel * memory + num_batch, CACHE_PADDING)


@dataclass(frozen=True)
class EngineRules:
    """How Ollama 0.24.0 loads a model of this architecture.

    ``layers`` is each block's cache on the Go engine (None: no cache). ``refusal`` is set when
    the planner cannot predict the engine's bytes; it says why. ``flash_attention`` is
    fs/ggml/ggml.go SupportsFlashAttention: when false, Ollama turns flash attention off and a
    quantized KV cache type is dropped to f16 (llm/server.go NewLlamaServer).
    """

    engine: str
    layers: tuple[LayerCache | None, ...]
    flash_attention: bool
    single_sequence: bool = False
    refusal: str | None = None
    estimate: Any = None  # llamacpp_estimate.EstimateInputs on the llama.cpp runner


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def engine_for(architecture: str) -> str:
    return "ollama" if architecture in OLLAMA_ENGINE_ARCHITECTURES else "llama.cpp"


def per_layer(value: Any, block_count: int, default: int) -> list[int]:
    """fs/ggml/ggml.go HeadCount/HeadCountKV: an array per layer, or one value for every layer."""
    if value is None:
        return [default] * block_count
    if isinstance(value, (list, tuple)):
        items = [int(item) for item in value]
        fill = items[0] if len(items) == 1 else default
        return [items[i] if i < len(items) else fill for i in range(block_count)]
    return [int(value)] * block_count


@dataclass(frozen=True)
class Hyper:
    """The ``{arch}.*`` metadata the rules read, with fs/ggml's defaults applied."""

    architecture: str
    block_count: int
    embedding_length: int
    heads: list[int]
    kv_heads: list[int]
    key_length: int
    value_length: int
    get: Callable[[str], Any]

    @classmethod
    def read(cls, get: Callable[[str], Any], architecture: str, block_count: int, embedding_length: int) -> Hyper:
        def key(name: str) -> Any:
            return get(f"{architecture}.{name}")

        heads = per_layer(key("attention.head_count"), block_count, 1)
        kv_heads = per_layer(key("attention.head_count_kv"), block_count, 1)
        head_min = min(heads, default=0)
        # fs/ggml EmbeddingHeadCountMax uses the smallest head count; K and V default to it.
        default_dim = embedding_length // head_min if head_min > 0 else 0
        key_length = _int(key("attention.key_length"), default_dim)
        value_length = _int(key("attention.value_length"), default_dim)
        return cls(architecture, block_count, embedding_length, heads, kv_heads, key_length, value_length, key)


def _int(value: Any, default: int) -> int:
    if value is None or isinstance(value, (list, tuple)):
        return default
    return int(value)


def supports_flash_attention(hyper: Hyper) -> bool:
    """fs/ggml/ggml.go GGML.SupportsFlashAttention."""
    if hyper.get("pooling_type") is not None:
        return False
    if hyper.architecture in ("qwen35", "qwen35moe", "qwen3next"):
        return True
    if hyper.architecture in ("gemma2", "grok"):
        return False
    return hyper.key_length != 0 and hyper.value_length != 0 and hyper.key_length == hyper.value_length


def go_engine_layers(hyper: Hyper) -> tuple[tuple[LayerCache | None, ...], str | None]:
    """Each block's cache on the Go engine, or a refusal saying why it is not predicted."""
    arch, n = hyper.architecture, hyper.block_count

    def plain(i: int) -> LayerCache:
        return LayerCache(hyper.key_length, hyper.value_length, hyper.kv_heads[i])

    if arch in _PLAIN_CAUSAL:
        return tuple(plain(i) for i in range(n)), None
    if arch == "gemma3":
        # model/models/gemma3/model.go: NewWrapperCache(NewSWACache(window), NewCausalCache);
        # model_text.go Forward: every 6th block is global, the others use the window.
        window = _int(hyper.get("attention.sliding_window"), 0)
        key_length = _int(hyper.get("attention.key_length"), 256)
        value_length = _int(hyper.get("attention.value_length"), 256)
        return tuple(
            LayerCache(key_length, value_length, hyper.kv_heads[i],
                       window=0 if (i + 1) % GEMMA3_GLOBAL_EVERY == 0 else window)
            for i in range(n)
        ), None
    if arch in ("gptoss", "gpt-oss"):
        # model/models/gptoss/model.go: NewSWAMemCache(window, 4096) for even blocks, causal for
        # odd ones; K and V are headDim() = key_length (else value_length, else hidden / heads).
        window = _int(hyper.get("attention.sliding_window"), 0)
        head_dim = hyper.key_length or hyper.value_length
        return tuple(
            LayerCache(head_dim, head_dim, hyper.kv_heads[i],
                       window=window if i % 2 == 0 else 0, window_memory=SWA_MEMORY_GPTOSS if i % 2 == 0 else 0)
            for i in range(n)
        ), None
    if arch == "deepseek2":
        # model/models/deepseek2/model.go: with key_length_mla and value_length_mla set (MLA,
        # V3.1-style files) the cache holds the compressed latent: K = rope dims + kv_lora_rank,
        # V = kv_lora_rank, one head. Otherwise K and V are per head: key/value length x kv heads,
        # where key/value length prefer the *_mla keys (cmp.Or).
        kv_lora_rank = _int(hyper.get("attention.kv_lora_rank"), 0)
        rope_dims = _int(hyper.get("rope.dimension_count"), 0)
        key_mla = _int(hyper.get("attention.key_length_mla"), 0)
        value_mla = _int(hyper.get("attention.value_length_mla"), 0)
        if key_mla and value_mla:
            if not kv_lora_rank:
                return (), "deepseek2 metadata has MLA key lengths but no attention.kv_lora_rank"
            return tuple(LayerCache(rope_dims + kv_lora_rank, kv_lora_rank, 1) for _ in range(n)), None
        key_length = key_mla or hyper.key_length
        value_length = value_mla or hyper.value_length
        return tuple(LayerCache(key_length, value_length, hyper.kv_heads[i]) for i in range(n)), None
    if arch in _RECURRENT:
        return (), (
            f"{arch} keeps recurrent state (Ollama 0.24.0 kvcache/recurrent.go: conv and delta/SSM states per "
            "sequence plus checkpoint copies, allocated while the graph is built) beside its attention cache; "
            "the planner does not model that allocation"
        )
    return (), f"the planner has no rule for {arch}'s cache on Ollama's Go engine (model/models/{arch})"


def engine_rules(hyper: Hyper, estimate: Any) -> EngineRules:
    engine = engine_for(hyper.architecture)
    flash = supports_flash_attention(hyper)
    single = hyper.architecture in SINGLE_SEQUENCE_ARCHITECTURES
    if engine == "llama.cpp":
        refusal = estimate.refusal if estimate is not None else "no estimate inputs"
        return EngineRules(engine, (), flash, single, refusal, estimate)
    layers, refusal = go_engine_layers(hyper)
    return EngineRules(engine, layers, flash, single, refusal)


def standard_rules(block_count: int, head_dim: int, kv_heads: int) -> EngineRules:
    """A plain causal cache on every block, on the Go engine (a geometry without rules)."""
    layers: Sequence[LayerCache | None] = [LayerCache(head_dim, head_dim, kv_heads)] * block_count
    return EngineRules("ollama", tuple(layers), True)
