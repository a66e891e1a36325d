"""Upper bound on decode speed from memory bandwidth.

Decoding one token reads every active weight once (MoE: only the routed experts) plus the KV cache
written so far, and the blocks run one after another: the GPU's part at GPU memory bandwidth, then
the host's part at host RAM bandwidth. Time per token is at least the sum of the two reads, so
tokens/s is at most its inverse. Kernel launches, expert routing, PCIe hand-offs between the
devices and compute are ignored; real decode is lower, by the most on fully offloaded MoE models
whose per-token reads are small.
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


def decode_bound(
    geometry: ModelGeometry,
    placement: Placement,
    *,
    gpu_bandwidth: float | None,
    host_bandwidth: float,
    context_fill: int,
) -> DecodeBound:
    """Bound at ``context_fill`` tokens already in the cache (decode cost grows with context).

    The cache is read in 256-cell steps (kvcache/causal.go buildMask rounds the visible range).
    """
    fill = min(context_fill, placement.kv_cells)
    kv_read_per_layer = kv_bytes_per_layer(geometry, round_up(fill, 256), placement.kv_cache_type) if fill else 0
    gpu_blocks = placement.gpu_blocks
    split = geometry.block_count - gpu_blocks
    output = geometry.output_bytes
    gpu_bytes = sum(geometry.block_active_bytes[split:]) + gpu_blocks * kv_read_per_layer
    cpu_bytes = sum(geometry.block_active_bytes[:split]) + split * kv_read_per_layer
    if placement.output_on_gpu:
        gpu_bytes += output
    else:
        cpu_bytes += output
    return bound_from_reads(gpu_bytes, cpu_bytes, context_fill=fill, gpu_bandwidth=gpu_bandwidth,
                            host_bandwidth=host_bandwidth)


def bound_from_reads(gpu_bytes: int, cpu_bytes: int, *, context_fill: int, gpu_bandwidth: float | None,
                     host_bandwidth: float) -> DecodeBound:
    """The bound for a token that reads ``gpu_bytes`` from VRAM, then ``cpu_bytes`` from host RAM."""
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
    )
