"""Decode and prefill bounds for llama-server's tensor placement (llamacpp_placement.py).

Decode (speed.py's bound, per tensor instead of per layer): one token reads the active part of
every weight (for routed experts only expert_used_count / expert_count of them) and the KV cells
written so far; what sits on the GPU is read at GPU bandwidth, the experts kept in host RAM at host
RAM bandwidth, because a one-token batch is below the op-offload threshold and the CPU computes
them itself (ggml-backend.cpp ggml_backend_sched_backend_id_from_cur; ggml-cuda.cu
ggml_backend_cuda_device_offload_op: batch >= 32). The KV cache stays on the GPU with
``-ngl 999``, so a full context no longer slows the host's part, unlike Ollama's layer split.

Prefill (prefill.py's batched model): llama.cpp computes a prompt in ubatches of ``-ub`` tokens;
for each, the scheduler copies the host-resident weights the GPU computes with, of the routed
experts only those some token of the ubatch was routed to (ggml_backend_sched_compute_splits), at
the host-to-device bandwidth of the buffer they live in: pageable with mmap (CPU_Mapped), pinned
with ``--load-mode none`` (CUDA_Host). The GPU term is the same fully resident prefill fit
prefill.py uses (measured on Ollama's engine; llama.cpp's own kernels are not measured yet).
"""

from __future__ import annotations

from ollama_gpu.planner.architectures import round_up
from ollama_gpu.planner.geometry import ModelGeometry, is_routed_expert
from ollama_gpu.planner.llamacpp_placement import CPU, CONTEXT_PADDING, GPU, OP_OFFLOAD_MIN_BATCH, LlamaPlacement
from ollama_gpu.planner.prefill import GpuPrefill, PrefillEstimate, batched_prefill, uniform_expert_share
from ollama_gpu.planner.speed import DecodeBound, bound_from_reads


def _kv_read(placement: LlamaPlacement, cells: int, device: str) -> int:
    """K+V bytes of ``cells`` cells of every layer on ``device`` (one sequence's stream)."""
    total_cells = placement.settings.kv_cells
    gpu_start = max(placement.n_layer + 1 - placement.n_gpu_layers, 0)
    return sum(size * cells // total_cells for il, size in enumerate(placement.kv_layer_bytes)
               if (il >= gpu_start) == (device == GPU))


def llama_decode_bound(placement: LlamaPlacement, *, gpu_bandwidth: float | None, host_bandwidth: float,
                       context_fill: int) -> DecodeBound:
    """Bound at ``context_fill`` tokens in one slot; llama_kv_cache::get_n_kv reads whole
    256-cell steps. The input layer's one row per token is left out."""
    fill = min(context_fill, placement.settings.slot_cells)
    cells = round_up(fill, CONTEXT_PADDING) if fill else 0
    reads = {GPU: 0, CPU: 0}
    for tensor in placement.tensors:
        if tensor.layer >= 0:
            reads[tensor.device] += tensor.active_bytes
    return bound_from_reads(
        reads[GPU] + _kv_read(placement, cells, GPU), reads[CPU] + _kv_read(placement, cells, CPU),
        context_fill=fill, gpu_bandwidth=gpu_bandwidth, host_bandwidth=host_bandwidth,
    )


def host_weights_per_ubatch(geometry: ModelGeometry, placement: LlamaPlacement, expert_share: float) -> float:
    """Host-resident block weights one ubatch copies to the GPU: ``expert_share`` of the routed
    experts, all of any other tensor (blocks left on the CPU by -ngl, or moved by a --fit pattern)."""
    return sum(tensor.nbytes * (expert_share if is_routed_expert(tensor.name) else 1.0)
               for tensor in placement.tensors
               if tensor.device == CPU and 0 <= tensor.layer < placement.n_layer)


def llama_prefill_estimate(geometry: ModelGeometry, placement: LlamaPlacement, tokens: int, *,
                           h2d_bandwidth: float, gpu: GpuPrefill, expert_share: float | None = None) -> PrefillEstimate:
    """Time to prefill ``tokens`` into an empty slot; ``expert_share`` None assumes a trained,
    balanced router (prefill.uniform_expert_share)."""
    settings = placement.settings
    ubatch = settings.reserve_tokens
    if ubatch < OP_OFFLOAD_MIN_BATCH or not settings.op_offload:
        raise ValueError(f"ubatch {ubatch} without op offload: the host computes its experts itself (not modelled)")
    share = uniform_expert_share(geometry, ubatch) if expert_share is None else expert_share
    weights = host_weights_per_ubatch(geometry, placement, share)
    return batched_prefill(
        tokens, batch=ubatch, kv_cells=settings.slot_cells, h2d_bandwidth=h2d_bandwidth, gpu=gpu,
        copied_per_batch=lambda visible: weights + _kv_read(placement, visible, CPU),
    )
