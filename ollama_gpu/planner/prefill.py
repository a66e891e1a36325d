"""Prompt-processing (prefill) time of the pinned engine with op offload, from the placement.

Ollama 0.24.0's CUDA build runs every prompt batch of 32 tokens or more on the GPU, also for the
blocks whose weights stay in host RAM (graph.py, "op offload"): the scheduler copies each such
weight tensor to the GPU for the batch, from the ordinary (pageable) host buffers the engine keeps
CPU-resident weights in, and the attention of those blocks reads their KV cells from host RAM the
same way. The host computes almost nothing (the token-embedding lookup). So one batch costs

    transfer  (weights of the host-resident blocks + their KV cells the batch attends to)
              / host-to-device bandwidth
    compute   what the GPU spends on that batch when everything is resident

and a prompt of N tokens is ceil(N / num_batch) batches. Of a MoE block's expert tensors only the
experts some token of the batch was routed to are copied (ggml-backend.cpp,
ggml_backend_sched_compute_splits: "copying only the experts that are used"). With a trained,
load-balanced router a 512-token batch picking 8 of 128 experts per token reaches practically all
of them (uniform routing: 1 - (1 - 8/128)^512 ≈ 1), so the default share is that uniform figure.
The lab's random-weight models route far less evenly (their measured share is fitted and stated in
the README): their MoE prefill is faster than the real model's would be. The GPU term comes from a
measured fully-resident prefill on the same GPU and model (``GpuPrefill``: seconds per token and
per token squared, the attention part); for another GPU it is scaled by a stated factor.

The host's cores matter only without op offload (batches under 32 tokens, or engines that compute
host-resident blocks on the CPU, like the one the operator's 40 tokens/s came from); that case is
not modelled, and ``hardware.prefillTokensPerSecond`` stays the measured override for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from ollama_gpu.planner.geometry import ModelGeometry
from ollama_gpu.planner.placement import Placement, kv_bytes_per_layer

# ggml-backend.cpp: host-resident weights are offloaded only for batches of at least 32 tokens.
OP_OFFLOAD_MIN_BATCH = 32


@dataclass(frozen=True)
class GpuPrefill:
    """GPU time of a prefill with every weight resident: a·N + b·N² seconds for N tokens."""

    seconds_per_token: float
    seconds_per_token_squared: float
    source: str

    def seconds(self, tokens: int) -> float:
        return self.seconds_per_token * tokens + self.seconds_per_token_squared * tokens * tokens

    def scaled(self, factor: float, source: str) -> GpuPrefill:
        """The same model on a GPU ``factor`` times slower (derived, not measured)."""
        return replace(self, seconds_per_token=self.seconds_per_token * factor,
                       seconds_per_token_squared=self.seconds_per_token_squared * factor, source=source)


@dataclass(frozen=True)
class PrefillEstimate:
    tokens: int
    batches: int
    transfer_bytes: float
    transfer_seconds: float
    gpu_seconds: float

    @property
    def seconds(self) -> float:
        return self.transfer_seconds + self.gpu_seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else math.inf


def uniform_expert_share(geometry: ModelGeometry, batch: int) -> float:
    """Expected share of experts a batch of ``batch`` tokens routes to when routing is uniform."""
    if not geometry.is_moe:
        return 1.0
    return 1 - (1 - geometry.expert_used_count / geometry.expert_count) ** batch


def host_weight_bytes(geometry: ModelGeometry, placement: Placement, expert_share: float) -> float:
    """Bytes of host-resident block weights one batch copies: all dense tensors, ``expert_share``
    of the routed experts (their bytes follow from the active bytes: active = dense + experts x k/E)."""
    host_blocks = geometry.block_count - placement.gpu_blocks
    weights = sum(geometry.block_weight_bytes[:host_blocks])
    if not geometry.is_moe:
        return weights
    routed = geometry.expert_used_count / geometry.expert_count
    experts = (weights - sum(geometry.block_active_bytes[:host_blocks])) / (1 - routed)
    return weights - experts + expert_share * experts


def prefill_estimate(
    geometry: ModelGeometry,
    placement: Placement,
    tokens: int,
    *,
    h2d_bandwidth: float,
    gpu: GpuPrefill,
    expert_share: float | None = None,
) -> PrefillEstimate:
    """Time to prefill ``tokens`` prompt tokens into an empty cache with op offload.

    ``expert_share``: the share of a MoE block's experts one batch copies; None for the uniform
    routing estimate (a trained router).
    """
    batch = placement.num_batch
    if batch < OP_OFFLOAD_MIN_BATCH:
        raise ValueError(f"num_batch {batch} is under {OP_OFFLOAD_MIN_BATCH}: the host computes its blocks itself")
    host_blocks = geometry.block_count - placement.gpu_blocks
    share = uniform_expert_share(geometry, batch) if expert_share is None else expert_share
    weights = host_weight_bytes(geometry, placement, share)
    return batched_prefill(
        tokens, batch=batch, kv_cells=placement.kv_cells, h2d_bandwidth=h2d_bandwidth, gpu=gpu,
        copied_per_batch=lambda visible: weights + host_blocks * kv_bytes_per_layer(geometry, visible, placement.kv_cache_type),
    )


def batched_prefill(tokens: int, *, batch: int, kv_cells: int, h2d_bandwidth: float, gpu: GpuPrefill,
                    copied_per_batch: Callable[[int], float]) -> PrefillEstimate:
    """A prompt of ``tokens`` in batches of ``batch``: each batch copies ``copied_per_batch(visible)``
    bytes to the GPU (``visible``: the KV cells it attends to), then the GPU computes the prompt.
    Shared by Ollama's layer split and llama-server's expert split (llamacpp_placement.py)."""
    if tokens < 1 or h2d_bandwidth <= 0:
        raise ValueError("tokens and the host-to-device bandwidth must be positive")
    batches = -(-tokens // batch)
    transfer = 0.0
    for index in range(batches):
        # The batch attends to every cell written so far, in 256-cell steps (kvcache/causal.go;
        # llama.cpp pads n_kv to 256 with flash attention too).
        visible = min(kv_cells, -(-min(tokens, (index + 1) * batch) // 256) * 256)
        transfer += copied_per_batch(visible)
    return PrefillEstimate(
        tokens=tokens,
        batches=batches,
        transfer_bytes=transfer,
        transfer_seconds=transfer / h2d_bandwidth,
        gpu_seconds=gpu.seconds(tokens),
    )


def fit_gpu_prefill(samples: list[tuple[int, float]], source: str) -> GpuPrefill:
    """Least-squares a·N + b·N² through (tokens, seconds) of fully resident prefills (b >= 0)."""
    if not samples:
        raise ValueError("no fully resident prefill to fit")
    s11 = sum(n * n for n, _ in samples)
    s12 = sum(n**3 for n, _ in samples)
    s22 = sum(n**4 for n, _ in samples)
    t1 = sum(n * t for n, t in samples)
    t2 = sum(n * n * t for n, t in samples)
    determinant = s11 * s22 - s12 * s12
    if len(samples) < 2 or determinant <= 0:
        return GpuPrefill(t1 / s11, 0.0, source)
    a = (t1 * s22 - t2 * s12) / determinant
    b = (s11 * t2 - s12 * t1) / determinant
    if b < 0 or a < 0:
        return GpuPrefill(t1 / s11, 0.0, source)
    return GpuPrefill(a, b, source)


# Fully resident prefill of the catalog's Qwen3-30B-A3B builds on the lab's H200 (Ollama 0.24.0
# CUDA, sm_90, num_batch 512, f16 KV, flash attention), fitted by fit_gpu_prefill to the committed
# runs in lab/results; tests/unit/test_planner_prefill.py refits them from those files.
LAB_GPU = "NVIDIA H200"
LAB_GPU_PREFILL = {
    "qwen3:30b-a3b-thinking-2507-q8_0": GpuPrefill(157.4e-6, 1.19e-9, "lab: qwen3-30b-a3b-q8_0 fully resident on an H200"),
    "qwen3:30b-a3b-thinking-2507-q4_K_M": GpuPrefill(170.5e-6, 0.314e-9, "lab: qwen3-30b-a3b-q4_K_M fully resident on an H200"),
}


@dataclass(frozen=True)
class PrefillModel:
    """What prefill_estimate needs beyond the placement, for one model on one host."""

    h2d_bandwidth: float
    gpu: GpuPrefill
    source: str

    def estimate(self, geometry: ModelGeometry, placement: Placement, tokens: int) -> PrefillEstimate:
        return prefill_estimate(geometry, placement, tokens, h2d_bandwidth=self.h2d_bandwidth, gpu=self.gpu)


def derived_prefill_model(
    model_name: str, *, h2d_bandwidth: float | None, slowdown_vs_lab: float | None, card: str
) -> PrefillModel | None:
    """The lab's GPU term scaled to another card, with that host's copy bandwidth: derived, not
    measured. None when the model has no lab fit or the card no derivation figures."""
    lab = LAB_GPU_PREFILL.get(model_name)
    if lab is None or not h2d_bandwidth or not slowdown_vs_lab:
        return None
    gpu = lab.scaled(slowdown_vs_lab, f"{lab.source}, x{slowdown_vs_lab:g} for the {card} (derived)")
    return PrefillModel(h2d_bandwidth, gpu, f"derived for the {card} from the {LAB_GPU} lab")
