"""Upper bound on decode speed from memory bandwidth.

Decoding one token reads every active weight once (MoE: only the routed experts) plus the KV cache
written so far, and the blocks run one after another: the GPU's part at GPU memory bandwidth, then
the host's part at host RAM bandwidth. Time per token is at least the sum of the two reads, so
tokens/s is at most its inverse. Kernel launches, expert routing, PCIe hand-offs between the
devices and compute are ignored; real decode is lower, by the most on fully offloaded MoE models
whose per-token reads are small.

Several streams (parallel request slots, all busy): the runner decodes one token of every stream in
one batch, so a step reads each weight once for all of them, except a MoE block's routed experts,
of which it reads the union the streams' tokens picked. With k of E experts per token, routed
independently and uniformly, an expert is missed by all N tokens with probability (1 - k/E)^N, so a
block reads on average weights - (weights - active) x (1 - k/E)^(N-1): its active bytes at N = 1,
tending to the whole block. Real routing is skewed towards popular experts, which shrinks the union,
so this is the heavier side of the estimate. Every stream reads its own KV cache: one batch's
attention spans the cells of all its sequences (kvcache/causal.go buildMask), N x fill cells.
Each stream gets one token per step; the aggregate is N tokens per step.
"""

from __future__ import annotations

from dataclasses import dataclass

from ollama_gpu.planner.geometry import ModelGeometry
from ollama_gpu.planner.placement import Placement, kv_bytes_per_layer, round_up


@dataclass(frozen=True)
class DecodeBound:
    """Bytes read per decoded token on each device and the speed bound they imply."""

    gpu_bytes_per_token: int
    cpu_bytes_per_token: int
    context_fill: int
    tokens_per_s: float
    # Streams decoding together; the *_bytes_per_token figures are then per step (one token each).
    streams: int = 1

    @property
    def aggregate_tokens_per_s(self) -> float:
        return self.tokens_per_s * self.streams


def block_bytes_per_step(weights: int, active: int, expert_share: float, streams: int) -> float:
    """Expected bytes one block reads per step of ``streams`` tokens (module docstring)."""
    return weights - (weights - active) * (1 - expert_share) ** (streams - 1)


def decode_bound(
    geometry: ModelGeometry,
    placement: Placement,
    *,
    gpu_bandwidth: float | None,
    host_bandwidth: float,
    context_fill: int,
    streams: int = 1,
) -> DecodeBound:
    """Bound at ``context_fill`` tokens already in each stream's cache (decode cost grows with
    context), with ``streams`` of the placement's parallel slots decoding at once.

    The cache is read in 256-cell steps (kvcache/causal.go buildMask rounds the visible range).
    """
    if not 1 <= streams <= placement.num_parallel:
        raise ValueError(f"streams must be 1 to num_parallel ({placement.num_parallel}), not {streams}")
    fill = min(context_fill, placement.kv_cells)
    cells = min(streams * fill, placement.kv_cells)
    kv_read_per_layer = kv_bytes_per_layer(geometry, round_up(cells, 256), placement.kv_cache_type) if cells else 0
    expert_share = geometry.expert_used_count / geometry.expert_count if geometry.is_moe else 1.0
    block_reads = [
        block_bytes_per_step(weights, active, expert_share, streams)
        for weights, active in zip(geometry.block_weight_bytes, geometry.block_active_bytes)
    ]
    gpu_blocks = placement.gpu_blocks
    split = geometry.block_count - gpu_blocks
    output = geometry.output_bytes
    gpu_bytes = round(sum(block_reads[split:])) + gpu_blocks * kv_read_per_layer
    cpu_bytes = round(sum(block_reads[:split])) + split * kv_read_per_layer
    if placement.output_on_gpu:
        gpu_bytes += output
    else:
        cpu_bytes += output
    return bound_from_reads(gpu_bytes, cpu_bytes, context_fill=fill, gpu_bandwidth=gpu_bandwidth,
                            host_bandwidth=host_bandwidth, streams=streams)


def bound_from_reads(gpu_bytes: int, cpu_bytes: int, *, context_fill: int, gpu_bandwidth: float | None,
                     host_bandwidth: float, streams: int = 1) -> DecodeBound:
    """The bound for a step that reads ``gpu_bytes`` from VRAM, then ``cpu_bytes`` from host RAM,
    giving each of ``streams`` streams one token."""
    seconds = cpu_bytes / host_bandwidth
    if gpu_bytes:
        if not gpu_bandwidth:
            raise ValueError("layers are on the GPU but no GPU bandwidth was given")
        seconds += gpu_bytes / gpu_bandwidth
    return DecodeBound(
        gpu_bytes_per_token=gpu_bytes,
        cpu_bytes_per_token=cpu_bytes,
        context_fill=context_fill,
        tokens_per_s=1.0 / seconds,
        streams=streams,
    )
