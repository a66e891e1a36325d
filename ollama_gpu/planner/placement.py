"""Where Ollama 0.24.0's Go engine puts a model's layers, KV cache and compute graph.

The rules, with where each one lives in the pinned source (github.com/ollama/ollama@v0.24.0):
- llm/server.go NewLlamaServer: num_ctx above the model's training context is cut to it;
  num_batch is capped at num_ctx; a quantized KV type without flash attention is dropped to f16
  with a warning (the Ollama-engine branch); KV size = num_ctx x num_parallel.
- runner/ollamarunner/cache.go + kvcache/causal.go (Causal.Init): the cache holds
  roundUp(num_ctx x num_parallel, CachePadding) cells per layer; ml/backend/ggml/ggml.go
  (Backend.CacheConfig) sets CachePadding to 256 with and without flash attention in 0.24.0.
  K and V are [head_dim, kv_heads, cells] each, in f16, q8_0 or q4_0.
- ml/backend/ggml/ggml.go New: blk.N.* tensors are layer N, output + output_norm are one more
  layer, token_embd stays on the CPU ("InputWeights").
- llm/server.go buildLayout: the space for layers on a GPU is free VRAM minus
  ml/device.go DeviceInfo.MinimumMemory (457 MiB for CUDA) minus OLLAMA_GPU_OVERHEAD
  (envconfig.GpuOverhead, bytes) minus that GPU's compute graph; a layer costs its weights plus
  its KV cache.
- llm/server.go assignLayers / findBestFit / greedyFit: layers are packed from the last one
  downward and packing stops at the first that does not fit; when not all fit, the packing is
  redone without the output layer, which then stays on the CPU.
- llm/server.go ollamaServer.Load: the first layout is computed before any size is known (so it
  puts everything on the GPU); the runner then reports real sizes, including the compute graph of
  that layout, and the layout is recomputed until it repeats; a layout with more layers than the
  current one is only taken through the "exploring intermediate layers" step, which forces each
  count in between and keeps the largest one whose own measurement still supports it.
- ml/device.go BackendMemory.Log: "model weights", "kv cache", "compute graph" per device and
  "total memory" as their sum; ml/backend/ggml/ggml.go Backend.Load logs
  "offloaded N/M layers to GPU" with M = blocks + 1.

Single GPU only (the project's hosts have one). CUDA's per-tensor row padding (a few hundred bytes
per layer) is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ollama_gpu.planner.geometry import ModelGeometry, TensorInfo
from ollama_gpu.planner.graph import GraphReserve, graph_reserve
from ollama_gpu.planner.units import MIB

CUDA_MINIMUM_MEMORY = 457 * MIB
KV_CACHE_PADDING = 256
KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")

# fs/ggml/ggml.go KV.OllamaEngineRequired: architectures that always run on the Go engine whose
# placement this module reproduces. Others run on the llama.cpp runner (llm/server.go
# llamaServer.Load), which places layers from estimates instead.
OLLAMA_ENGINE_ARCHITECTURES = frozenset(
    {
        "bert", "deepseek2", "deepseekocr", "gemma3", "gemma3n", "gemma4", "gptoss", "gpt-oss",
        "laguna", "llama4", "mistral3", "mllama", "nemotron_h", "nemotron_h_moe", "nemotron_h_omni",
        "nomic-bert", "olmo3", "qwen25vl", "qwen3", "qwen3moe", "qwen35", "qwen35moe", "qwen3next",
        "qwen3vl", "qwen3vlmoe", "glm4moelite", "glmocr", "lfm2", "lfm2moe",
    }
)


@dataclass(frozen=True)
class Layout:
    """The last ``gpu_blocks`` blocks on the GPU, and the output layer too if ``output_on_gpu``."""

    gpu_blocks: int
    output_on_gpu: bool

    @property
    def gpu_layers(self) -> int:
        return self.gpu_blocks + int(self.output_on_gpu)


@dataclass(frozen=True)
class Placement:
    """The memory layout the runner would report for the final layout, in bytes.

    The GPU holds the last ``gpu_blocks`` of ``block_count`` blocks, plus the output layer when
    ``output_on_gpu``; Ollama counts that as "offloaded N/M layers" with M = block_count + 1.
    """

    gpu_blocks: int
    block_count: int
    output_on_gpu: bool
    weights_gpu: int
    weights_cpu: int
    kv_gpu: int
    kv_cpu: int
    graph_gpu: int
    graph_cpu: int
    num_ctx: int
    num_batch: int
    kv_cells: int
    kv_cache_type: str
    gpu_layer_space: int | None
    warnings: tuple[str, ...]

    @property
    def offloaded_layers(self) -> int:
        """N of Ollama's "offloaded N/M layers to GPU" line."""
        return self.gpu_blocks + int(self.output_on_gpu)

    @property
    def all_on_gpu(self) -> bool:
        return self.gpu_blocks == self.block_count and self.output_on_gpu

    @property
    def gpu_total(self) -> int:
        return self.weights_gpu + self.kv_gpu + self.graph_gpu

    @property
    def cpu_total(self) -> int:
        return self.weights_cpu + self.kv_cpu + self.graph_cpu

    @property
    def total(self) -> int:
        """What Ollama logs as "total memory": weights, KV and graphs of every device."""
        return self.gpu_total + self.cpu_total


def kv_bytes_per_layer(geometry: ModelGeometry, cells: int, kv_cache_type: str) -> int:
    """K plus V of one layer: two [head_dim, kv_heads, cells] tensors of the cache type."""
    cache = TensorInfo("kv", kv_cache_type.upper(), (geometry.head_dim, geometry.head_count_kv, cells))
    try:
        return 2 * cache.nbytes
    except ValueError:
        raise ValueError(
            f"KV cache type {kv_cache_type} cannot hold head_dim {geometry.head_dim} in whole blocks"
        ) from None


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def place(
    geometry: ModelGeometry,
    *,
    gpu_free_vram: int | None,
    gpu_overhead: int,
    num_ctx: int,
    kv_cache_type: str,
    flash_attention: bool,
    num_parallel: int,
    num_batch: int = 512,
    op_offload: bool = False,
) -> Placement:
    """Predicts the layout Ollama 0.24.0 settles on; ``gpu_free_vram=None`` means no GPU."""
    if kv_cache_type not in KV_CACHE_TYPES:
        raise ValueError(f"kv cache type must be one of {', '.join(KV_CACHE_TYPES)}, not {kv_cache_type!r}")
    for label, value in (("num_ctx", num_ctx), ("num_parallel", num_parallel), ("num_batch", num_batch)):
        if value < 1:
            raise ValueError(f"{label} must be at least 1, not {value}")
    if gpu_overhead < 0 or (gpu_free_vram is not None and gpu_free_vram < 0):
        raise ValueError("GPU memory figures must not be negative")

    warnings: list[str] = []
    if geometry.architecture not in OLLAMA_ENGINE_ARCHITECTURES:
        warnings.append(
            f"architecture {geometry.architecture} runs on Ollama's llama.cpp runner, which places layers "
            "from its own estimates: these figures follow the Go engine's rules and are approximate"
        )
    if geometry.context_length and num_ctx > geometry.context_length:
        warnings.append(
            f"num_ctx {num_ctx} exceeds the model's context {geometry.context_length}; Ollama uses {geometry.context_length}"
        )
        num_ctx = geometry.context_length
    num_batch = min(num_batch, num_ctx)
    if kv_cache_type != "f16" and not flash_attention:
        warnings.append(f"KV cache type {kv_cache_type} needs flash attention; Ollama drops it to f16")
        kv_cache_type = "f16"

    cells = round_up(num_ctx * num_parallel, KV_CACHE_PADDING)
    kv_layer = kv_bytes_per_layer(geometry, cells, kv_cache_type)
    block_costs = [weights + kv_layer for weights in geometry.block_weight_bytes]

    def graphs(layout: Layout) -> GraphReserve:
        return graph_reserve(
            geometry,
            batch=num_batch,
            kv_cells=cells,
            flash_attention=flash_attention,
            kv_cache_quantized=kv_cache_type != "f16",
            gpu_blocks=layout.gpu_blocks,
            output_on_gpu=layout.output_on_gpu,
            op_offload=op_offload,
        )

    def memory(layout: Layout) -> Placement:
        gpu_blocks = geometry.block_weight_bytes[geometry.block_count - layout.gpu_blocks:]
        output_gpu = geometry.output_bytes if layout.output_on_gpu else 0
        graph = graphs(layout)
        weights_gpu = sum(gpu_blocks) + output_gpu
        return Placement(
            gpu_blocks=layout.gpu_blocks,
            block_count=geometry.block_count,
            output_on_gpu=layout.output_on_gpu,
            weights_gpu=weights_gpu,
            weights_cpu=geometry.weight_bytes - weights_gpu,
            kv_gpu=kv_layer * layout.gpu_blocks,
            kv_cpu=kv_layer * (geometry.block_count - layout.gpu_blocks),
            graph_gpu=graph.gpu,
            graph_cpu=graph.cpu,
            num_ctx=num_ctx,
            num_batch=num_batch,
            kv_cells=cells,
            kv_cache_type=kv_cache_type,
            gpu_layer_space=None if gpu_free_vram is None else layer_space(graph.gpu),
            warnings=tuple(warnings),
        )

    def layer_space(graph_gpu: int) -> int:
        # llm/server.go buildLayout: unsigned arithmetic, so an overdrawn GPU has zero space.
        return max(0, gpu_free_vram - CUDA_MINIMUM_MEMORY - gpu_overhead - graph_gpu)

    if gpu_free_vram is None:
        return memory(Layout(0, False))
    final = _converge(
        block_costs,
        geometry.output_bytes,
        space_for=lambda layout: layer_space(graphs(layout).gpu),
        fits=lambda layout: memory(layout).gpu_total <= gpu_free_vram,
    )
    return memory(final)


def _packed_from_end(costs: list[int], space: int) -> int:
    """llm/server.go greedyFit: take layers from the last one down, stop at the first misfit."""
    count = 0
    for cost in reversed(costs):
        if cost > space:
            break
        space -= cost
        count += 1
    return count


def _assign(block_costs: list[int], output_cost: int, space: int) -> Layout:
    """llm/server.go assignLayers for one GPU: output layer included first, else blocks only."""
    if _packed_from_end(block_costs + [output_cost], space) == len(block_costs) + 1:
        return Layout(len(block_costs), True)
    return Layout(_packed_from_end(block_costs, space), False)


def _forced(count: int, block_count: int) -> Layout:
    """A layout with num_gpu = count, as the exploring step asks for: blocks only unless all fit."""
    if count > block_count:
        return Layout(block_count, True)
    return Layout(count, False)


def _converge(
    block_costs: list[int],
    output_cost: int,
    *,
    space_for: Callable[[Layout], int],
    fits: Callable[[Layout], bool],
) -> Layout:
    """llm/server.go ollamaServer.Load: re-layout with each layout's own graph until it repeats.

    ``space_for(layout)`` is the layer space left once that layout's GPU graph is reserved;
    ``fits(layout)`` says whether its allocation would succeed on the real card.
    """
    current = Layout(len(block_costs), True)  # sizes are all zero before the first measurement
    seen = {current}
    while True:
        proposal = _assign(block_costs, output_cost, space_for(current))
        if proposal not in seen and proposal.gpu_layers <= current.gpu_layers:
            seen.add(proposal)
            current = proposal
            continue
        if proposal.gpu_layers - current.gpu_layers > 1:
            for count in range(proposal.gpu_layers - 1, current.gpu_layers - 1, -1):
                forced = _forced(count, len(block_costs))
                verified = _assign(block_costs, output_cost, space_for(forced))
                if fits(forced) and forced.gpu_layers <= verified.gpu_layers:
                    return forced
        return current
