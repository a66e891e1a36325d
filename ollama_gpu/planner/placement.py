"""Where Ollama 0.24.0 puts a model's layers, KV cache and compute graph, on one GPU or several.

The rules, with where each one lives in the pinned source (github.com/ollama/ollama@v0.24.0):
- llm/server.go NewLlamaServer: num_ctx above the model's training context is cut to it;
  num_batch is capped at num_ctx; a quantized KV type without flash attention is dropped to f16
  with a warning (the Ollama-engine branch); KV size = num_ctx x num_parallel.
- runner/ollamarunner/cache.go + kvcache/causal.go (Causal.Init): the cache holds
  roundUp(num_ctx x num_parallel, CachePadding) cells per layer; ml/backend/ggml/ggml.go
  (Backend.CacheConfig) sets CachePadding to 256 with and without flash attention in 0.24.0.
  K and V are [head_dim, kv_heads, cells] each, in f16, q8_0 or q4_0; sliding-window and MLA
  caches differ per architecture (architectures.py).
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
- Several GPUs: layout.py (llm/server.go buildLayout/assignLayers/findBestFit/greedyFit). Each
  card that holds layers reserves its own compute graph (ggml.go New schedules only the devices
  that got layers); the planner gives each the single-GPU graph estimate (graph.py).
- Architectures: architectures.py (which runner, what each block caches, refusals) and
  llamacpp_estimate.py (the llama.cpp runner's placement from fs/ggml GraphSize estimates).

CUDA's per-tensor row padding and buffer alignment (a few hundred bytes per layer) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ollama_gpu.planner.architectures import EngineRules, LayerCache, round_up, standard_rules
from ollama_gpu.planner.geometry import ModelGeometry, TensorInfo
from ollama_gpu.planner.graph import graph_reserve
from ollama_gpu.planner.layout import Gpu, Layout, LayoutError, build_layout, converge, layer_sum
from ollama_gpu.planner.llamacpp_estimate import graph_fallbacks, graph_size
from ollama_gpu.planner.units import MIB, format_gb, format_ollama

# speed.py reads round_up from here, next to kv_bytes_per_layer.
__all__ = ["GpuShare", "Placement", "UnpredictableModel", "kv_bytes_per_layer", "layer_cache_bytes", "place", "round_up"]

CUDA_MINIMUM_MEMORY = 457 * MIB
KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")
KV_TYPE_NAMES = {"f16": "F16", "q8_0": "Q8_0", "q4_0": "Q4_0"}


class UnpredictableModel(ValueError):
    """The planner will not predict this model's memory; the message says why and what it knows."""


@dataclass(frozen=True)
class GpuShare:
    """One GPU's part of the layout: the blocks it holds (indices), the output layer, its bytes."""

    index: int
    free_vram: int
    blocks: tuple[int, ...]
    output: bool
    weights: int
    kv: int
    graph: int
    layer_space: int

    @property
    def total(self) -> int:
        return self.weights + self.kv + self.graph

    @property
    def layers(self) -> int:
        return len(self.blocks) + int(self.output)


@dataclass(frozen=True)
class Placement:
    """The memory layout the runner would report for the final layout, in bytes.

    The GPUs hold the last ``gpu_blocks`` of ``block_count`` blocks, plus the output layer when
    ``output_on_gpu``; Ollama counts that as "offloaded N/M layers" with M = block_count + 1.
    The *_gpu figures are sums over ``gpus`` (one share per card, in CUDA order).
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
    gpus: tuple[GpuShare, ...] = ()
    errors: tuple[str, ...] = ()
    engine: str = "ollama"
    num_parallel: int = 1
    flash_attention: bool = True

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
    """K plus V of one full-attention layer of a plain causal cache: [head_dim, kv_heads, cells] each."""
    return layer_cache_bytes(LayerCache(geometry.head_dim, geometry.head_dim, geometry.head_count_kv), cells, kv_cache_type)


def layer_cache_bytes(layer: LayerCache, cells: int, kv_cache_type: str) -> int:
    """kvcache/causal.go Put: K [k_width, cells] and V [v_width, cells] in the cache type."""
    type_name = KV_TYPE_NAMES.get(kv_cache_type, kv_cache_type.upper())
    try:
        return (TensorInfo("k", type_name, (layer.k_dim, layer.heads, cells)).nbytes
                + TensorInfo("v", type_name, (layer.v_dim, layer.heads, cells)).nbytes)
    except ValueError:
        raise ValueError(
            f"KV cache type {kv_cache_type} cannot hold head_dim {layer.k_dim}/{layer.v_dim} in whole blocks"
        ) from None


def rules_of(geometry: ModelGeometry) -> EngineRules:
    if geometry.rules is not None:
        return geometry.rules
    return standard_rules(geometry.block_count, geometry.head_dim, geometry.head_count_kv)


def refusal_message(geometry: ModelGeometry, reason: str) -> str:
    blocks = geometry.block_weight_bytes
    return (
        f"{geometry.name}: the planner does not predict this model's memory: {reason}. What is known: "
        f"{geometry.architecture}, {geometry.block_count} blocks of {format_ollama(min(blocks))}"
        f"{'' if min(blocks) == max(blocks) else ' to ' + format_ollama(max(blocks))} of weights, output layer "
        f"{format_ollama(geometry.output_bytes)}, token embeddings {format_ollama(geometry.token_embd_bytes)} "
        f"(weights {format_gb(geometry.weight_bytes)} in all)"
    )


@dataclass(frozen=True)
class _Settings:
    num_ctx: int
    num_batch: int
    num_parallel: int
    kv_cache_type: str
    flash_attention: bool
    warnings: tuple[str, ...]


def _effective_settings(geometry: ModelGeometry, rules: EngineRules, *, num_ctx: int, num_batch: int, num_parallel: int,
                        kv_cache_type: str, flash_attention: bool) -> _Settings:
    """What Ollama really runs with (server/sched.go load, llm/server.go NewLlamaServer)."""
    warnings: list[str] = []
    if rules.single_sequence and num_parallel != 1:
        warnings.append(f"{geometry.architecture} does not support parallel requests: Ollama loads it with num_parallel 1")
        num_parallel = 1
    if geometry.context_length and num_ctx > geometry.context_length:
        warnings.append(
            f"num_ctx {num_ctx} exceeds the model's context {geometry.context_length}; Ollama uses {geometry.context_length}"
        )
        num_ctx = geometry.context_length
    num_batch = min(num_batch, num_ctx)
    if rules.estimate is not None and rules.estimate.is_embedding:
        num_batch = max(num_batch, num_ctx)  # llamaServer.Load: embedding models batch the whole context
    if flash_attention and not rules.flash_attention:
        warnings.append("flash attention enabled but not supported by model: Ollama turns it off")
        flash_attention = False
    if kv_cache_type != "f16" and not flash_attention:
        warnings.append(f"KV cache type {kv_cache_type} needs flash attention; Ollama drops it to f16")
        kv_cache_type = "f16"
    return _Settings(num_ctx, num_batch, num_parallel, kv_cache_type, flash_attention, tuple(warnings))


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
    gpu_free_vrams: Sequence[int] | None = None,
    num_gpu: int = -1,
) -> Placement:
    """Predicts the layout Ollama 0.24.0 settles on.

    ``gpu_free_vrams`` lists each GPU's free VRAM in CUDA order and wins over ``gpu_free_vram``
    (one GPU); neither means no GPU. ``num_gpu`` is the Modelfile parameter (-1: automatic).
    Raises UnpredictableModel for an architecture whose allocation the planner does not follow.
    """
    if kv_cache_type not in KV_CACHE_TYPES:
        raise ValueError(f"kv cache type must be one of {', '.join(KV_CACHE_TYPES)}, not {kv_cache_type!r}")
    for label, value in (("num_ctx", num_ctx), ("num_parallel", num_parallel), ("num_batch", num_batch)):
        if value < 1:
            raise ValueError(f"{label} must be at least 1, not {value}")
    if num_gpu < -1:
        raise ValueError(f"num_gpu must be -1 (automatic) or a layer count, not {num_gpu}")
    frees = list(gpu_free_vrams) if gpu_free_vrams else ([gpu_free_vram] if gpu_free_vram is not None else [])
    if gpu_overhead < 0 or any(free < 0 for free in frees):
        raise ValueError("GPU memory figures must not be negative")

    rules = rules_of(geometry)
    if rules.refusal:
        raise UnpredictableModel(refusal_message(geometry, rules.refusal))
    settings = _effective_settings(
        geometry, rules, num_ctx=num_ctx, num_batch=num_batch, num_parallel=num_parallel,
        kv_cache_type=kv_cache_type, flash_attention=flash_attention,
    )
    # server/sched.go processPending: num_gpu 0 loads with no GPU at all.
    gpus = [] if num_gpu == 0 else [Gpu(index, free) for index, free in enumerate(frees)]
    if rules.engine == "llama.cpp":
        return _place_llamacpp(geometry, rules, settings, gpus, gpu_overhead, num_gpu)
    return _place_go_engine(geometry, rules, settings, gpus, gpu_overhead, num_gpu, op_offload)


def _shares(layout: Layout, gpus: list[Gpu], block_count: int, weights: list[int], kv: list[int],
            graphs: dict[int, int], reserve: int) -> tuple[GpuShare, ...]:
    held = {gpu: layers for gpu, layers in layout}
    shares = []
    for gpu in gpus:
        layers = held.get(gpu.index, ())
        graph = graphs.get(gpu.index, 0)
        shares.append(GpuShare(
            index=gpu.index,
            free_vram=gpu.free,
            blocks=tuple(layer for layer in layers if layer < block_count),
            output=block_count in layers,
            weights=sum(weights[layer] for layer in layers),
            kv=sum(kv[layer] for layer in layers),
            graph=graph,
            layer_space=max(0, gpu.free - reserve - graph),
        ))
    return tuple(shares)


def _result(geometry: ModelGeometry, settings: _Settings, shares: tuple[GpuShare, ...], *, weights_total: int,
            kv_total: int, graph_cpu: int, kv_cells: int, has_gpu: bool, engine: str,
            warnings: tuple[str, ...], errors: tuple[str, ...]) -> Placement:
    weights_gpu = sum(share.weights for share in shares)
    kv_gpu = sum(share.kv for share in shares)
    return Placement(
        gpu_blocks=sum(len(share.blocks) for share in shares),
        block_count=geometry.block_count,
        output_on_gpu=any(share.output for share in shares),
        weights_gpu=weights_gpu,
        weights_cpu=weights_total - weights_gpu,
        kv_gpu=kv_gpu,
        kv_cpu=kv_total - kv_gpu,
        graph_gpu=sum(share.graph for share in shares),
        graph_cpu=graph_cpu,
        num_ctx=settings.num_ctx,
        num_batch=settings.num_batch,
        kv_cells=kv_cells,
        kv_cache_type=settings.kv_cache_type,
        gpu_layer_space=sum(share.layer_space for share in shares) if has_gpu else None,
        warnings=(*settings.warnings, *warnings),
        gpus=shares,
        errors=errors,
        engine=engine,
        num_parallel=settings.num_parallel,
        flash_attention=settings.flash_attention,
    )


def _place_go_engine(geometry: ModelGeometry, rules: EngineRules, settings: _Settings, gpus: list[Gpu],
                     gpu_overhead: int, num_gpu: int, op_offload: bool) -> Placement:
    n = geometry.block_count
    cells = [
        layer.cells(num_ctx=settings.num_ctx, num_parallel=settings.num_parallel, num_batch=settings.num_batch)
        if layer else 0
        for layer in rules.layers
    ]
    kv = [layer_cache_bytes(layer, cells[i], settings.kv_cache_type) if layer else 0 for i, layer in enumerate(rules.layers)]
    kv.append(0)  # the output layer has no cache
    weights = [*geometry.block_weight_bytes, geometry.output_bytes]
    costs = [w + k for w, k in zip(weights, kv)]
    largest_cells = max(cells, default=0)
    reserve = CUDA_MINIMUM_MEMORY + gpu_overhead

    def graphs(layout: Layout) -> tuple[dict[int, int], int]:
        on_gpu = {layer for _, layers in layout for layer in layers}
        reserve_ = graph_reserve(
            geometry,
            batch=settings.num_batch,
            kv_cells=largest_cells,
            flash_attention=settings.flash_attention,
            kv_cache_quantized=settings.kv_cache_type != "f16",
            gpu_blocks=len(on_gpu - {n}),
            output_on_gpu=n in on_gpu,
            op_offload=op_offload,
            block_cache_bytes=kv[:n],
        )
        return {gpu: reserve_.gpu for gpu, layers in layout if layers}, reserve_.cpu

    def fits(layout: Layout) -> bool:
        per_gpu, _ = graphs(layout)
        free = {gpu.index: gpu.free for gpu in gpus}
        return all(sum(costs[layer] for layer in layers) + per_gpu.get(gpu, 0) <= free[gpu] for gpu, layers in layout)

    errors: tuple[str, ...] = ()
    layout: Layout = ()
    if gpus:
        try:
            layout = converge(costs, gpus, reserve=reserve, graphs_of=lambda layout: graphs(layout)[0], fits=fits, num_gpu=num_gpu)
        except LayoutError as error:
            errors = (f"Ollama would refuse to load the model: {error}",)
            layout = ()
    per_gpu, graph_cpu = graphs(layout)
    shares = _shares(layout, gpus, n, weights, kv, per_gpu, reserve)
    return _result(
        geometry, settings, shares,
        weights_total=geometry.weight_bytes, kv_total=sum(kv), graph_cpu=graph_cpu, kv_cells=largest_cells,
        has_gpu=bool(gpus), engine="ollama", warnings=(), errors=errors,
    )


def _place_llamacpp(geometry: ModelGeometry, rules: EngineRules, settings: _Settings, gpus: list[Gpu],
                    gpu_overhead: int, num_gpu: int) -> Placement:
    """llm/server.go llamaServer.Load: estimates in, one layout out (nothing is measured)."""
    estimate = rules.estimate
    n = geometry.block_count
    sizes = graph_size(estimate, context=settings.num_ctx, batch=settings.num_batch,
                       num_parallel=settings.num_parallel, kv_cache_type=settings.kv_cache_type)
    partial, full = graph_fallbacks(estimate, sizes)
    kv = [*sizes.kv, 0]
    weights = [*estimate.block_sizes, estimate.output_size]
    costs = [w + k for w, k in zip(weights, kv)]
    # "Use the size of one layer as a buffer": every card loses blk.0's weights and KV.
    buffer = estimate.block_sizes[0] + sizes.kv[0] if n and estimate.block_sizes[0] else 0
    cards = [Gpu(gpu.index, max(0, gpu.free - buffer)) for gpu in gpus]
    reserve = CUDA_MINIMUM_MEMORY + gpu_overhead
    graphs: dict[int, int] = {}
    layout: Layout = ()
    while cards:
        previous = layout
        layout = build_layout(costs, cards, graphs, reserve=reserve, requested=num_gpu)
        if len(layout) <= len(previous):
            break
        for gpu, _ in layout:
            graphs[gpu] = max(partial, full)
    graph = full if layer_sum(layout) == n + 1 else partial
    for gpu, _ in layout:
        graphs[gpu] = graph
    shares = _shares(layout, cards, n, weights, kv, graphs, reserve)
    warnings = (
        f"{geometry.architecture} runs on Ollama's llama.cpp runner: these are Ollama's own estimates "
        "(fs/ggml GraphSize), which decide its layout and fill its memory log; llama.cpp's real allocation differs",
    )
    # We historically haven't included InputWeights in the model size (llamaServer.Load).
    return _result(
        geometry, settings, shares,
        weights_total=sum(weights), kv_total=sum(kv), graph_cpu=0, kv_cells=settings.num_ctx * settings.num_parallel,
        has_gpu=bool(gpus), engine="llama.cpp", warnings=warnings, errors=(),
    )
