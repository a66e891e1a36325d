"""Where llama.cpp's llama-server puts a model's tensors, KV cache and compute buffers.

The pinned build is b11312 (commit 0c1e57098, the llama.cpp vendored in the llama-cpp-python 0.3.36
sdist). Unlike Ollama, llama.cpp places tensors one by one, so a MoE model can keep only its routed
experts in host RAM. The rules, with where each one lives in that source:

- Layers (src/llama-model.cpp, llama_model_base::load_tensors): ``-ngl`` counts the output layer,
  so ``-ngl 999`` puts every block and the output layer on the GPU (i_gpu_start =
  max(n_layer + 1 - ngl, 0)); the input layer (token_embd and the other GET_ROWS inputs of
  src/llama-arch.cpp LLM_TENSOR_INFOS with LLM_TENSOR_LAYER_INPUT) always stays on the CPU
  ("there is very little benefit to offloading the input layer"). A model without an ``output``
  tensor loads token_embd a second time as the output (TENSOR_DUPLICATED), on the output's device.
- Overrides (src/llama-model-loader.cpp, create_tensor's buft_for_tensor): each tensor's name is
  tried against the ``--override-tensor`` patterns in order with std::regex_search; the first match
  decides its buffer. ``--n-cpu-moe N`` (common/arg.cpp) adds one pattern per block i < N,
  ``blk\\.i`` + LLM_FFN_EXPS_REGEX ``\\.ffn_(up|down|gate|gate_up)_(ch|)exps`` (common/common.h
  llm_add_n_cpu_ffn_overrides, llm_ffn_block_regex): the routed experts of the first N blocks go to
  host RAM, their biases included; routers (ffn_gate_inp), shared experts (``*_shexp``), norms and
  attention stay with the block.
- Host buffers (make_cpu_buft_list, buft_for_tensor): the CPU list starts with the GPU's pinned
  host buffer type, which CUDA accepts for every weight op, so host tensors land in ``CUDA_Host``
  (pinned) buffers; with mmap (``--load-mode auto``, the default, or ``mmap``) that choice is
  replaced by the plain CPU type and the buffer is the mapped file range (``CPU_Mapped``), whose
  logged size spans from the first to the last host tensor in the file (GPU tensors in between
  included). ``--load-mode none`` keeps the pinned buffer, which the GPU reads faster.
- GPU buffer sizes (ggml/src/ggml-cuda/ggml-cuda.cu): each tensor is ggml_nbytes plus, for a
  quantized row length not a multiple of 512 (MATRIX_ROW_PADDING), one padding row part, aligned
  to 128 bytes (ggml_backend_cuda_buffer_type_get_alloc_size / get_alignment).
- KV cache (src/llama-context.cpp constructor, src/llama-kv-cache.cpp): n_ctx is padded to 256;
  with ``-np P`` slots and no ``--kv-unified`` each slot gets PAD(n_ctx / P, 256) cells (``-c`` is
  the whole pool, not one slot's context), K and V are [n_embd_k_gqa, cells] per layer in the cache
  type, on the device of the layer (offload_kqv, the default).
- Compute buffers (src/llama-context.cpp sched_reserve): the prompt graph is reserved for
  min(n_ctx, n_ubatch) tokens and, in llama-server, only ``-np`` outputs (n_outputs_max =
  n_parallel: tools/server/server-context.cpp server_output_limits), so the logits are small.
  With a CUDA device the CPU backend's compute buffer is pinned (``CUDA_Host``). ggml's scheduler
  (ggml/src/ggml-backend.cpp ggml_backend_sched_backend_id_from_cur) runs an op whose weight is in
  host RAM on the GPU when the batch is at least 32 tokens (ggml-cuda.cu
  ggml_backend_cuda_device_offload_op, GGML_OP_OFFLOAD_MIN_BATCH), copying the weight into the GPU's
  compute buffer first; for MUL_MAT_ID it copies only the experts the batch routed to
  (ggml_backend_sched_compute_splits). compute_buffers() estimates the sizes; the staging rule is
  graph.py's, fitted on Ollama 0.24.0 (the same ggml scheduler and allocator), not yet measured on
  llama-server: see COMPUTE_UNCERTAINTY.
- ``--fit`` (common/fit.cpp common_params_fit_impl, on by default): fit_prediction() transcribes
  it for one GPU; it only changes what the user did not set, so ``-ngl`` or any tensor override
  (``--n-cpu-moe``) makes it give up with a warning unless everything already fits.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache

from ollama_gpu.planner.architectures import LayerCache, round_up
from ollama_gpu.planner.geometry import GGML_TYPE_LAYOUT, ModelGeometry, TensorInfo, is_routed_expert
from ollama_gpu.planner.graph import F16, F32, activation_bytes, staged_weight_bytes
from ollama_gpu.planner.placement import KV_CACHE_TYPES, UnpredictableModel, layer_cache_bytes, rules_of
from ollama_gpu.planner.units import MIB

LLAMA_CPP_BUILD = "b11312"
LLAMA_CPP_COMMIT = "0c1e57098"

# common/common.h LLM_FFN_EXPS_REGEX: what --cpu-moe and --n-cpu-moe move to host RAM.
FFN_EXPS_REGEX = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
# common/fit.cpp: the pattern --fit uses to measure "every expert in host RAM".
FIT_ALL_EXPERTS_REGEX = r"blk\.\d+\.ffn_(up|down|gate_up|gate)_(ch|)exps"
# common/common.h: --fit-target's default margin per device.
DEFAULT_FIT_TARGET = 1024 * MIB
# ggml-cuda.cu: MATRIX_ROW_PADDING and the CUDA buffer alignment.
CUDA_ROW_PADDING = 512
CUDA_ALIGNMENT = 128
# ggml-cuda.cu ggml_backend_cuda_device_offload_op's default (GGML_OP_OFFLOAD_MIN_BATCH).
OP_OFFLOAD_MIN_BATCH = 32
# llama-context.cpp: n_ctx and each slot's context are padded to this many cells.
CONTEXT_PADDING = 256
# How far the GPU compute-buffer estimate may be off: the staging term was fitted to Ollama's graph
# (graph.py) and the rest is a count of the largest live tensors, not yet checked against a
# llama-server log. The plan subtracts the margin from the free VRAM, so a margin of at least this
# much absorbs the error.
COMPUTE_UNCERTAINTY = 128 * MIB

GPU = "CUDA0"
CPU = "CPU"
# src/llama-arch.cpp LLM_TENSOR_INFOS: tensors of the input layer (LLM_TENSOR_LAYER_INPUT).
_INPUT_TENSORS = frozenset({"token_embd", "position_embd", "token_types", "per_layer_token_embd"})
# Tables a model creates for every layer from one tensor without a block number.
_PER_LAYER_TABLES = frozenset({"rope_freqs", "rope_factors_long", "rope_factors_short"})
# Architectures whose llama.cpp cache has sliding-window layers (llama_kv_cache_iswa), which this
# module does not size; Ollama-engine rules with a window are refused the same way.
_SWA_ARCHITECTURES = frozenset({"gemma2", "gemma3", "gemma3n", "cohere2", "llama4", "gptoss", "gpt-oss"})
_BLOCK = re.compile(r"^blk\.(\d+)\.")

Override = tuple[str, str]  # (pattern, device) as --override-tensor "pattern=device"


def n_cpu_moe_patterns(n: int) -> tuple[str, ...]:
    """common/common.h llm_add_n_cpu_ffn_overrides with LLM_FFN_EXPS_REGEX: one pattern per block < n."""
    if n < 0:
        raise ValueError(f"--n-cpu-moe must not be negative, not {n}")
    return tuple(rf"blk\.{i}{FFN_EXPS_REGEX}" for i in range(n))


def n_cpu_moe_overrides(n: int) -> tuple[Override, ...]:
    return tuple((pattern, CPU) for pattern in n_cpu_moe_patterns(n))


def override_device(name: str, overrides: Sequence[Override]) -> str | None:
    """The device of the first pattern std::regex_search finds in ``name`` (buft_for_tensor)."""
    for pattern, device in overrides:
        if _compiled(pattern).search(name):
            return device
    return None


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class Fraction(enum.IntEnum):
    """common/fit.cpp common_layer_fraction_t: what of a partial layer's FFN goes to host RAM."""

    ATTN = 1  # every ffn_gate*/ffn_up*/ffn_down* tensor (routers and shared experts too)
    UP = 2  # all of them but ffn_up*
    GATE = 3  # only ffn_down*
    MOE = 4  # the routed experts only


def fit_overflow_pattern(block: int, fraction: Fraction) -> str:
    """common/fit.cpp get_overflow_pattern."""
    if fraction is Fraction.ATTN:
        return rf"blk\.{block}\.ffn_(gate|up|gate_up|down).*"
    if fraction is Fraction.UP:
        return rf"blk\.{block}\.ffn_(gate|gate_up|down).*"
    if fraction is Fraction.GATE:
        return rf"blk\.{block}\.ffn_down.*"
    return rf"blk\.{block}\.ffn_(up|down|gate_up|gate)_(ch|)exps"


@dataclass(frozen=True)
class ServerSettings:
    """The llama-server flags that decide memory. ``ctx_size`` is ``-c``, the whole KV pool that
    llama-server divides between its ``parallel`` slots; ``mmap`` is ``--load-mode auto|mmap``
    (False: ``none``)."""

    ctx_size: int
    parallel: int = 1
    kv_unified: bool = False
    ubatch: int = 512
    batch: int = 2048
    cache_type: str = "f16"
    flash_attention: bool = True
    mmap: bool = True
    op_offload: bool = True

    def __post_init__(self) -> None:
        for label in ("ctx_size", "parallel", "ubatch", "batch"):
            if getattr(self, label) < 1:
                raise ValueError(f"{label} must be at least 1, not {getattr(self, label)}")
        if self.cache_type not in KV_CACHE_TYPES:
            raise ValueError(f"cache type must be one of {', '.join(KV_CACHE_TYPES)}, not {self.cache_type!r}")
        if self.cache_type != "f16" and not self.flash_attention:
            raise ValueError(f"a {self.cache_type} V cache needs flash attention in llama.cpp (-fa on)")

    @property
    def slot_cells(self) -> int:
        """llama-context.cpp: n_ctx_seq, the cells one slot can fill."""
        n_ctx = round_up(self.ctx_size, CONTEXT_PADDING)
        if self.kv_unified:
            return n_ctx
        return round_up(n_ctx // self.parallel, CONTEXT_PADDING)

    @property
    def kv_cells(self) -> int:
        """Cells per layer in all streams together (n_ctx after padding)."""
        return self.slot_cells * (1 if self.kv_unified else self.parallel)

    @property
    def reserve_tokens(self) -> int:
        """sched_reserve: min(n_ctx, n_ubatch), n_ubatch itself capped at n_batch (and n_batch at n_ctx)."""
        return min(round_up(self.ctx_size, CONTEXT_PADDING), self.batch, self.ubatch)

    @property
    def host_buffer(self) -> str:
        return "CPU_Mapped" if self.mmap else "CUDA_Host"


@dataclass(frozen=True)
class PlacedTensor:
    """One tensor where llama.cpp puts it: ``layer`` is the block, -1 input, ``n_layer`` output."""

    name: str
    layer: int
    device: str
    nbytes: int
    gpu_bytes: int  # what the CUDA buffer allocates for it (padding and alignment)
    active_bytes: int  # what one decoded token reads of it
    overridden: bool


@dataclass(frozen=True)
class ComputeBuffers:
    gpu: int
    host: int
    output: int  # llama_context's logits buffer (host, pinned with a GPU)


@dataclass(frozen=True)
class LlamaPlacement:
    """llama-server's buffers for one configuration, in bytes, and where each tensor went."""

    geometry_name: str
    settings: ServerSettings
    n_gpu_layers: int
    overrides: tuple[Override, ...]
    tensors: tuple[PlacedTensor, ...]
    n_layer: int
    kv_gpu: int
    kv_cpu: int
    kv_layer_bytes: tuple[int, ...]
    compute: ComputeBuffers

    @cached_property
    def model_gpu(self) -> int:
        """The "CUDA0 model buffer size"."""
        return sum(t.gpu_bytes for t in self.tensors if t.device == GPU)

    @cached_property
    def model_host(self) -> int:
        """Host weights; with mmap the logged CPU_Mapped buffer is the file span around them."""
        return sum(t.nbytes for t in self.tensors if t.device == CPU)

    @property
    def gpu_total(self) -> int:
        """Model, KV and compute buffers on the GPU: what --fit compares with free memory - margin."""
        return self.model_gpu + self.kv_gpu + self.compute.gpu

    @property
    def host_total(self) -> int:
        return self.model_host + self.kv_cpu + self.compute.host + self.compute.output

    @cached_property
    def cpu_expert_blocks(self) -> tuple[int, ...]:
        """Blocks of the GPU layers whose routed experts were moved to host RAM by an override."""
        return tuple(sorted({t.layer for t in self.tensors
                             if t.overridden and t.device == CPU and is_routed_expert(t.name)}))


def _is_quantized(ggml_type: str) -> bool:
    return GGML_TYPE_LAYOUT[ggml_type.upper()][0] > 1


@lru_cache(maxsize=65536)
def cuda_alloc_bytes(tensor: TensorInfo) -> int:
    """ggml_backend_cuda_buffer_type_get_alloc_size, aligned as ggml-alloc lays tensors out."""
    size = tensor.nbytes
    row = tensor.shape[0]
    if _is_quantized(tensor.ggml_type) and row % CUDA_ROW_PADDING:
        size += TensorInfo(tensor.name, tensor.ggml_type, (CUDA_ROW_PADDING - row % CUDA_ROW_PADDING,)).nbytes
    return round_up(size, CUDA_ALIGNMENT)


def _layer_of(name: str, n_layer: int) -> int:
    if (match := _BLOCK.match(name)) is not None:
        return int(match.group(1))
    base = name.split(".")[0]
    if base in _INPUT_TENSORS:
        return -1
    if base in _PER_LAYER_TABLES:
        return 0  # created for block 0 first (the copies for later blocks are duplicates)
    return n_layer


def _kv_layers(geometry: ModelGeometry) -> tuple[LayerCache, ...]:
    """Each block's K/V shape in llama.cpp's cache, or UnpredictableModel."""
    rules = rules_of(geometry)
    if rules.refusal:
        raise UnpredictableModel(f"{geometry.name}: {rules.refusal}")
    if geometry.architecture in _SWA_ARCHITECTURES or any(layer and layer.window for layer in rules.layers):
        raise UnpredictableModel(
            f"{geometry.name}: {geometry.architecture} has sliding-window layers, whose llama.cpp cache "
            "(llama_kv_cache_iswa) this planner does not size for llama-server")
    if rules.layers:
        if any(layer is None for layer in rules.layers):
            raise UnpredictableModel(f"{geometry.name}: layers without an attention cache are not modelled for llama-server")
        return tuple(layer for layer in rules.layers if layer is not None)
    estimate = rules.estimate
    if estimate is not None:
        if any(kv <= 0 for kv in estimate.kv_heads):
            raise UnpredictableModel(f"{geometry.name}: recurrent layers are not modelled for llama-server")
        return tuple(LayerCache(estimate.key_length, estimate.value_length, kv) for kv in estimate.kv_heads)
    return (LayerCache(geometry.head_dim, geometry.head_dim, geometry.head_count_kv),) * geometry.block_count


def _check_tensors(geometry: ModelGeometry) -> None:
    if not geometry.tensors:
        raise UnpredictableModel(
            f"{geometry.name}: the geometry carries no tensor list, which llama-server's per-tensor placement needs")


def place_llama_server(geometry: ModelGeometry, settings: ServerSettings, *, n_gpu_layers: int = 999,
                       overrides: Sequence[Override] = ()) -> LlamaPlacement:
    """The buffers llama-server allocates with ``-ngl n_gpu_layers`` and these tensor overrides."""
    _check_tensors(geometry)
    if n_gpu_layers < 0:
        raise ValueError(f"-ngl must not be negative here, not {n_gpu_layers}")
    n_layer = geometry.block_count
    layers = _kv_layers(geometry)
    i_gpu_start = max(n_layer + 1 - n_gpu_layers, 0)
    expert_share = geometry.expert_used_count / geometry.expert_count if geometry.is_moe else 1.0
    has_output = any(t.name == "output.weight" for t in geometry.tensors)
    listed: list[tuple[TensorInfo, int]] = [(t, _layer_of(t.name, n_layer)) for t in geometry.tensors]
    if not has_output:
        embedding = next((t for t in geometry.tensors if t.name == "token_embd.weight"), None)
        if embedding is not None:
            listed.append((embedding, n_layer))  # TENSOR_DUPLICATED: loaded again as the output
    placed = []
    for tensor, layer in listed:
        home = CPU if layer == -1 or layer < i_gpu_start else GPU
        forced = override_device(tensor.name, overrides)
        device = forced or home
        size = tensor.nbytes
        placed.append(PlacedTensor(
            name=tensor.name, layer=layer, device=device, nbytes=size, gpu_bytes=cuda_alloc_bytes(tensor),
            active_bytes=round(size * expert_share) if is_routed_expert(tensor.name) else size,
            overridden=forced is not None and forced != home,
        ))
    kv_layer = tuple(layer_cache_bytes(layer, settings.kv_cells, settings.cache_type) for layer in layers)
    kv_gpu = sum(size for il, size in enumerate(kv_layer) if il >= i_gpu_start)
    partial = LlamaPlacement(
        geometry_name=geometry.name, settings=settings, n_gpu_layers=n_gpu_layers, overrides=tuple(overrides),
        tensors=tuple(placed), n_layer=n_layer, kv_gpu=kv_gpu, kv_cpu=sum(kv_layer) - kv_gpu,
        kv_layer_bytes=kv_layer, compute=ComputeBuffers(0, 0, 0),
    )
    return replace(partial, compute=compute_buffers(geometry, partial))


def compute_buffers(geometry: ModelGeometry, placement: LlamaPlacement) -> ComputeBuffers:
    """Estimated "compute buffer size" lines: the prompt graph's largest live set per backend.

    Derived from the graph (src/llama-graph.cpp, src/models/qwen3moe.cpp) and the scheduler, and
    checked against the pinned build on the CPU (tests/unit/test_planner_llamacpp.py, CPU_RUNS:
    within 0.1 MiB for seven settings). The GPU side adds what a CPU run cannot show (the staged
    expert copy and CUDA's flash-attention copies) and is not measured yet: expect up to
    COMPUTE_UNCERTAINTY off there.
    - The KQ mask is a graph input, so it lives in the host compute buffer, f16 with flash
      attention (build_attn_inp_kq_mask), f32 without: [one stream's cells, tokens]; a GPU gets a
      copy of it.
    - The token embeddings are looked up on the CPU (token_embd is host-resident and GET_ROWS is
      never offloaded): tokens x embedding x f32 in the host buffer.
    - The FFN phase holds the MoE or FFN activations graph.py counts (activation_bytes) and one
      more hidden vector (the residual; measured on the CPU build), and on a GPU, when some weight
      it computes with lives in host RAM, the staged copy of the largest such tensor
      (graph.staged_weight_bytes, one copy at a time: each host weight starts its own split).
    - The attention phase holds the query, the attention output and two hidden vectors; with
      flash attention on CUDA and a quantized cache also the f16 copies of K and V allocated with
      the attention output (ggml-cuda/fattn.cu ggml_cuda_flash_attn_ext_get_alloc_size); without
      flash attention the f32 scores [cells, tokens, heads] on top (the softmax reuses them).
    - Outputs: llama-server reserves only ``parallel`` rows of logits (n_outputs_max), so the
      output phase is small; the logits themselves sit in a host "output buffer".
    No CUDA pool or cuBLAS workspace is counted: llama.cpp's log and --fit count the scheduler's
    buffers only, and the margin covers the rest.
    """
    settings = placement.settings
    tokens = settings.reserve_tokens
    mask = (F16 if settings.flash_attention else F32) * settings.slot_cells * tokens
    embeddings = F32 * tokens * geometry.embedding_length
    activations = activation_bytes(geometry, tokens)
    ffn = activations + F32 * tokens * geometry.embedding_length
    attention = F32 * tokens * (2 * geometry.head_count * geometry.head_dim + 2 * geometry.embedding_length)
    if not settings.flash_attention:
        attention += F32 * settings.slot_cells * tokens * geometry.head_count
    host_weights = [t for t in placement.tensors if t.device == CPU and t.layer >= 0 and t.layer < placement.n_layer]
    output = F32 * geometry.vocab_size * settings.parallel
    if placement.n_gpu_layers == 0:
        # Everything on the CPU: its buffer holds the whole graph.
        return ComputeBuffers(gpu=0, host=mask + embeddings + max(ffn, attention), output=output)
    offloads = settings.op_offload and tokens >= OP_OFFLOAD_MIN_BATCH
    gpu_ffn = ffn
    if host_weights and offloads:
        gpu_ffn += staged_weight_bytes(max(t.nbytes for t in host_weights), activations)
    gpu_attention = attention
    if settings.flash_attention and settings.cache_type != "f16":
        # A prompt batch's kernel (MMA or tile) wants f16 K and V: copies of every cell.
        gpu_attention += 2 * F16 * max(layer.k_dim * layer.heads for layer in _kv_layers(geometry)) * settings.kv_cells
    host = mask + embeddings
    if host_weights and not offloads:
        host += ffn  # the CPU runs its own expert matmuls on the batch
    return ComputeBuffers(gpu=mask + max(gpu_ffn, gpu_attention), host=host, output=output)


@dataclass(frozen=True)
class ExpertOffload:
    """The smallest --n-cpu-moe that fits a GPU budget, with its placement."""

    n_cpu_moe: int | None  # None: not even every expert in host RAM fits
    placement: LlamaPlacement
    budget: int  # free VRAM - margin: what the GPU total must not exceed


def smallest_n_cpu_moe(geometry: ModelGeometry, settings: ServerSettings, *, free_vram: int,
                       margin: int = DEFAULT_FIT_TARGET) -> ExpertOffload:
    """Fewest blocks whose experts go to host RAM (``-ngl 999 --n-cpu-moe N``) so that the GPU's
    model, KV and compute buffers stay within ``free_vram - margin``."""
    budget = free_vram - margin

    def place(n: int) -> LlamaPlacement:
        return place_llama_server(geometry, settings, overrides=n_cpu_moe_overrides(n))

    placement = place(0)
    if placement.gpu_total <= budget or not geometry.is_moe:
        return ExpertOffload(0 if placement.gpu_total <= budget else None, placement, budget)
    # From one block on, each further block only takes weights off the GPU (the staged copy is
    # already counted), so the GPU total falls with N and a bisection finds the first that fits.
    low, high = 0, geometry.block_count
    last = place(high)
    if last.gpu_total > budget:
        return ExpertOffload(None, last, budget)
    found = last
    while high - low > 1:
        middle = (low + high) // 2
        trial = place(middle)
        if trial.gpu_total <= budget:
            high, found = middle, trial
        else:
            low = middle
    return ExpertOffload(high, found, budget)


@dataclass(frozen=True)
class FitLayers:
    """common/fit.cpp ngl_t for one device: n_layer layers on it, the last n_part of them partial."""

    n_layer: int = 0
    n_part: int = 0
    overflow: Fraction = Fraction.MOE

    @property
    def n_full(self) -> int:
        return self.n_layer - self.n_part


def fit_overrides(layers: FitLayers, n_layer: int) -> tuple[int, tuple[Override, ...]]:
    """common/fit.cpp set_ngl_tensor_split_tbo for one GPU: -ngl and the overrides it writes.

    The partial layers are the *last* n_part of the device's range (the first one with the
    device's overflow fraction, the rest MOE); on the only GPU that range ends with the output
    layer, whose pattern ``blk\\.{n_layer}...`` matches nothing, so n_part - 1 blocks lose tensors.
    """
    first = n_layer + 1 - layers.n_layer + layers.n_full
    overrides = tuple(
        (fit_overflow_pattern(il, layers.overflow if il == first else Fraction.MOE), CPU)
        for il in range(first, first + layers.n_part)
    )
    return layers.n_layer, overrides


@dataclass(frozen=True)
class FitPrediction:
    """What ``--fit on --fit-target margin`` would run with on one GPU."""

    changed: bool  # False: the defaults (everything on the GPU) already fit
    layers: FitLayers
    placement: LlamaPlacement
    target: int  # free VRAM - margin
    steps: tuple[str, ...]  # the fit's decisions, as its trace log would tell them

    @property
    def cpu_expert_blocks(self) -> tuple[int, ...]:
        return self.placement.cpu_expert_blocks


def fit_prediction(geometry: ModelGeometry, settings: ServerSettings, *, free_vram: int,
                   margin: int = DEFAULT_FIT_TARGET) -> FitPrediction:
    """common/fit.cpp common_params_fit_impl for one GPU, a context set by the user (``-c``), no
    ``-ngl`` and no tensor overrides, with the planner's buffer estimates as its measurements.

    The fit measures each candidate by a dry-run load (no_alloc) that reports model, context and
    compute bytes per device, the same figures place_llama_server() estimates, so the search is
    deterministic given them:
    1. Everything on the GPU: done if free - total >= margin.
    2. Context: left alone, because the user set it.
    3. MoE models: measure all experts in host RAM (FIT_ALL_EXPERTS_REGEX); then fill the GPU
       back to front with "dense-only" layers (experts in host RAM) by false position between 0 and
       all layers, keeping the count whose total is <= free - margin.
    4. If the dense part fits, turn dense-only layers into full ones (experts on the GPU) by the
       same false position on the number of full layers, which are the *first* blocks of the
       range: --fit keeps the experts of the *last* blocks in host RAM, --n-cpu-moe those of the
       first. Then it tries to squeeze part of one more layer (first partial block's up, then
       gate projection back on the GPU; failing UP, ATTN), each accepted when total < target.
    The margin replaces Ollama's minimum memory and overhead: it must hold the CUDA context's
    pools and workspaces, which no buffer line counts.
    """
    _check_tensors(geometry)
    n_layer = geometry.block_count
    target = free_vram - margin
    steps: list[str] = []

    def measure(layers: FitLayers) -> LlamaPlacement:
        ngl, overrides = fit_overrides(layers, n_layer)
        return place_llama_server(geometry, settings, n_gpu_layers=ngl, overrides=overrides)

    full = place_llama_server(geometry, settings)
    if full.gpu_total <= target:
        steps.append("the defaults leave at least the margin free: no change")
        return FitPrediction(False, FitLayers(n_layer + 1), full, target, tuple(steps))
    moe = geometry.is_moe
    surplus_cpu_moe = 0
    if moe:
        all_experts = place_llama_server(geometry, settings, overrides=((FIT_ALL_EXPERTS_REGEX, CPU),))
        surplus_cpu_moe = target - all_experts.gpu_total
        steps.append(f"every expert in host RAM: GPU {all_experts.gpu_total / MIB:.0f} MiB, surplus {surplus_cpu_moe / MIB:.0f} MiB")

    # Step 3: dense-only layers back to front.
    current = FitLayers()
    mem = measure(current).gpu_total
    current, mem = _search(
        measure, target, current, mem, FitLayers(n_layer + 1, n_layer if moe else 0),
        distance=lambda low, high: high.n_layer - low.n_layer,
        advance=lambda low, step: FitLayers(
            low.n_layer + step, low.n_part + (step - 1 if low.n_part == 0 else step) if moe else 0),
    )
    steps.append(f"dense-only fill: {current.n_layer} layers on the GPU, {current.n_part} of them partial")
    if not moe or surplus_cpu_moe <= 0 or current.n_layer == 0:
        return FitPrediction(True, current, measure(current), target, tuple(steps))

    # Step 4: dense-only layers become full layers, front to back.
    current, mem = _search(
        measure, target, current, mem, FitLayers(current.n_layer, 0),
        distance=lambda low, high: high.n_full - low.n_full,
        advance=lambda low, step: FitLayers(low.n_layer, low.n_part - min(step, low.n_part)),
    )
    steps.append(f"full layers: {current.n_full} full, {current.n_part} partial")
    if current.n_layer > 1:
        up = replace(current, overflow=Fraction.UP)
        if measure(up).gpu_total < target:
            current = up
            steps.append("the first partial block keeps its up projection on the GPU")
            gate = replace(current, overflow=Fraction.GATE)
            if measure(gate).gpu_total < target:
                current = gate
                steps.append("and its gate projection")
        else:
            attn = replace(current, overflow=Fraction.ATTN)
            if measure(attn).gpu_total < target:
                current = attn
                steps.append("the first partial block moves its whole FFN (router included) to host RAM")
    return FitPrediction(True, current, measure(current), target, tuple(steps))


def _search(measure: Callable[[FitLayers], LlamaPlacement], target: int, current: FitLayers, mem: int,
            high: FitLayers, *, distance: Callable[[FitLayers, FitLayers], int],
            advance: Callable[[FitLayers, int], FitLayers]) -> tuple[FitLayers, int]:
    """llama.cpp's fit loop (common/fit.cpp, steps 3 and 4): `high` outright when it fits, else the
    false-position search between `current` (fits, `mem` on the GPU) and `high` (does not) for the
    furthest `advance` from `current` that still fits; returns it and its GPU bytes."""
    mem_high = measure(high).gpu_total
    if mem_high <= target:
        return high, mem_high
    while (delta := distance(current, high)) > 1:
        test = advance(current, _false_position_step(delta, target - mem, mem_high - mem))
        mem_test = measure(test).gpu_total
        if mem_test <= target:
            current, mem = test, mem_test
        else:
            high, mem_high = test, mem_test
    return current, mem


def _false_position_step(delta: int, to_target: int, to_high: int) -> int:
    """common/fit.cpp: uint32_t(int64_t(delta) * (target - mem) / (mem_high - mem)), clamped to
    [1, delta - 1]. C++ integer division truncates toward zero, and a negative quotient converted
    to uint32_t wraps to a large value, which the clamp turns into delta - 1."""
    numerator = delta * to_target
    quotient = abs(numerator) // abs(to_high) if to_high else 0
    if (numerator < 0) != (to_high < 0):
        quotient = -quotient
    return min(max(quotient % 2**32, 1), delta - 1)


def describe_tensors(placement: LlamaPlacement) -> list[tuple[str, str, int]]:
    """(what, device, bytes) rows that say which tensors went where, grouped by role."""
    groups: dict[tuple[str, str], int] = {}

    def role(t: PlacedTensor) -> str:
        if t.layer == -1:
            return "input (token_embd)"
        if t.layer == placement.n_layer:
            return "output + output_norm"
        if is_routed_expert(t.name):
            return "routed experts (ffn_*_exps)"
        part = t.name.split(".")[2] if t.name.count(".") >= 2 else t.name
        if part.startswith("attn"):
            return "attention (q/k/v/o, norms)"
        if part.startswith("ffn_gate_inp"):
            return "routers (ffn_gate_inp)"
        if part.endswith("_norm") or part.startswith("ffn_norm"):
            return "norms"
        return "other block tensors (dense FFN, shared experts)"

    for tensor in placement.tensors:
        key = (role(tensor), tensor.device)
        groups[key] = groups.get(key, 0) + (tensor.gpu_bytes if tensor.device == GPU else tensor.nbytes)
    return [(name, device, size) for (name, device), size in groups.items()]


def block_ranges(blocks: Sequence[int]) -> str:
    """"0-17, 20" for a sorted list of blocks."""
    if not blocks:
        return "none"
    ranges, start, previous = [], blocks[0], blocks[0]
    for block in [*blocks[1:], None]:
        if block is not None and block == previous + 1:
            previous = block
            continue
        ranges.append(f"{start}-{previous}" if previous != start else f"{start}")
        if block is not None:
            start = previous = block
    return ", ".join(ranges)

