"""Hardware profiles the planner plans for, each figure with where it comes from.

"Measured" figures are the operator's (field-notes.md); everything else is an assumption, named as
such, that a stack setting or a CLI flag overrides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ollama_gpu.planner.units import GIB


@dataclass(frozen=True)
class GpuProfile:
    """One CUDA GPU as Ollama sees it when it loads a model."""

    name: str
    free_vram: int = field(metadata={"doc": "bytes the CUDA driver reports free at load time"})
    memory_bandwidth: float = field(metadata={"doc": "peak device-memory bandwidth, bytes/s"})


@dataclass(frozen=True)
class HostProfile:
    """The machine around the GPU: RAM for the layers that stay on the CPU, cores, RAM bandwidth."""

    ram: int
    ram_bandwidth: float = field(metadata={"doc": "achievable bandwidth for one decoding thread pool, bytes/s"})
    cores: int


@dataclass(frozen=True)
class HardwareProfile:
    """A named host: GPU (None for CPU-only), host, prefill rate, and the assumptions behind them."""

    name: str
    gpu: GpuProfile | None
    host: HostProfile
    prefill_tokens_per_s: float = field(
        metadata={"doc": "prompt tokens per second for the first prompt of a conversation"}
    )
    assumptions: tuple[str, ...]


A10 = HardwareProfile(
    name="a10",
    gpu=GpuProfile(
        name="NVIDIA A10 24 GB",
        # field-notes.md "The hosts": usable VRAM about 22.5 GiB of the card's 24 GB.
        free_vram=round(22.5 * GIB),
        # NVIDIA's A10 datasheet: 600 GB/s GDDR6.
        memory_bandwidth=600e9,
    ),
    # field-notes.md: 116 GB RAM and 20 cores. Bandwidth is an assumption: an effective share of
    # an 8-channel DDR4 server socket for a 20-vCPU VM; the 30 tokens/s the operator measured
    # with 18 of 48 blocks in RAM needs at least about 50 GB/s.
    host=HostProfile(ram=116 * 10**9, ram_bandwidth=100e9, cores=20),
    # field-notes.md "Measured speed": 40 tokens/s prefill, hybrid Q8_0. That engine computed the
    # host-resident blocks on the CPU; 0.24.0 streams them through the GPU for prompt batches
    # (graph.py), so this figure is likely pessimistic for 0.24.0 until measured again.
    prefill_tokens_per_s=40.0,
    assumptions=(
        "usable VRAM 22.5 GiB (measured), 600 GB/s (datasheet)",
        "host RAM 116 GB and 20 cores (measured); RAM bandwidth 100 GB/s (assumed)",
        "prefill 40 tokens/s (measured on an older Ollama; 0.24.0 offloads prompt batches to the GPU and may be faster)",
    ),
)

V100 = HardwareProfile(
    name="v100",
    gpu=GpuProfile(
        name="NVIDIA V100 32 GB",
        # field-notes.md "The hosts": usable VRAM about 31.7 GiB.
        free_vram=round(31.7 * GIB),
        # NVIDIA's V100 datasheet: 900 GB/s HBM2.
        memory_bandwidth=900e9,
    ),
    # field-notes.md gives 8 cores and no RAM size. 64 GB is assumed (typical of 8-vCPU V100 cloud
    # VMs); bandwidth 50 GB/s is assumed for 8 vCPUs.
    host=HostProfile(ram=64 * 10**9, ram_bandwidth=50e9, cores=8),
    # Not measured: with nearly every block in VRAM prefill is GPU-bound; 300 tokens/s is a
    # deliberately conservative assumption.
    prefill_tokens_per_s=300.0,
    assumptions=(
        "usable VRAM 31.7 GiB (measured), 900 GB/s (datasheet), 8 cores (measured)",
        "host RAM 64 GB and RAM bandwidth 50 GB/s (assumed: not in the field notes)",
        "prefill 300 tokens/s (assumed, not measured)",
    ),
)

NONE = HardwareProfile(
    name="none",
    gpu=None,
    # A small CPU-only box (a laptop or CI runner) for tiny models: all values assumed.
    host=HostProfile(ram=16 * 10**9, ram_bandwidth=20e9, cores=4),
    prefill_tokens_per_s=50.0,
    assumptions=(
        "no GPU; host RAM 16 GB, 4 cores, RAM bandwidth 20 GB/s (assumed small local machine)",
        "prefill 50 tokens/s (assumed, for a model of about 1B parameters)",
    ),
)

PROFILES: dict[str, HardwareProfile] = {profile.name: profile for profile in (A10, V100, NONE)}
