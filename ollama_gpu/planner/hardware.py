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
    host_to_device_bandwidth: float | None = field(
        default=None, metadata={"doc": "cudaMemcpy from pageable host memory, bytes/s (op offload's weight copies)"}
    )
    prefill_slowdown_vs_lab: float | None = field(
        default=None, metadata={"doc": "how many times the lab's H200 prefill compute this card takes"}
    )
    host_to_device_pinned_bandwidth: float | None = field(
        default=None, metadata={"doc": "cudaMemcpy from pinned host memory, bytes/s (llama-server --load-mode none)"}
    )


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
        # Derived (README "GPU lab"): the lab's H200 host copied pageable memory at 7.0 GB/s over a
        # PCIe 5.0 link that carries 55 GB/s pinned; the staging copy on the host, not the link,
        # sets that rate, and an A10's PCIe 4.0 x16 (about 25 GB/s pinned) is no narrower.
        host_to_device_bandwidth=7.0e9,
        # Derived: dense tensor throughput, H200 989 TFLOP/s f16 and 1979 TOP/s int8 against the
        # A10's 125 and 250 (datasheets): 7.9x.
        prefill_slowdown_vs_lab=7.9,
        # Derived, not measured: PCIe 4.0 x16 carries about 25 GB/s from pinned memory (the lab's
        # PCIe 5.0 H200 host measured 55 GB/s, about twice that).
        host_to_device_pinned_bandwidth=25e9,
    ),
    # field-notes.md: 116 GB RAM and 20 cores. Bandwidth is an assumption: an effective share of
    # an 8-channel DDR4 server socket for a 20-vCPU VM; the 30 tokens/s the operator measured
    # with 18 of 48 blocks in RAM needs at least about 50 GB/s.
    host=HostProfile(ram=116 * 10**9, ram_bandwidth=100e9, cores=20),
    # field-notes.md "Measured speed": 40 tokens/s prefill, hybrid Q8_0, on an engine that computed
    # the host-resident blocks on the CPU. Plans with op offload (the pinned 0.24.0 CUDA build)
    # derive prefill from planner/prefill.py instead; this figure remains for the CPU-computing case.
    prefill_tokens_per_s=40.0,
    assumptions=(
        "usable VRAM 22.5 GiB (measured), 600 GB/s (datasheet)",
        "host RAM 116 GB and 20 cores (measured); RAM bandwidth 100 GB/s (assumed)",
        "prefill with op offload derived from the H200 lab: host copies at 7.0 GB/s, GPU compute 7.9x the H200's",
        "prefill without op offload 40 tokens/s (measured on an older Ollama that computed host blocks on the CPU)",
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
        # Derived as for the A10: host-bound pageable copies (PCIe 3.0 x16, about 12 GB/s pinned,
        # is still wider than 7.0 GB/s).
        host_to_device_bandwidth=7.0e9,
        # Derived: 125 TFLOP/s f16 tensor cores against the H200's 989 (no int8 tensor cores; the
        # engine's int8 kernels fall back to slower paths, so this is optimistic).
        prefill_slowdown_vs_lab=7.9,
        # Derived, not measured: PCIe 3.0 x16 carries about 12 GB/s from pinned memory.
        host_to_device_pinned_bandwidth=12e9,
    ),
    # field-notes.md gives 8 cores and no RAM size. 64 GB is assumed (typical of 8-vCPU V100 cloud
    # VMs); bandwidth 50 GB/s is assumed for 8 vCPUs.
    host=HostProfile(ram=64 * 10**9, ram_bandwidth=50e9, cores=8),
    # Not measured: the figure for plans without op offload, a deliberately conservative assumption.
    prefill_tokens_per_s=300.0,
    assumptions=(
        "usable VRAM 31.7 GiB (measured), 900 GB/s (datasheet), 8 cores (measured)",
        "host RAM 64 GB and RAM bandwidth 50 GB/s (assumed: not in the field notes)",
        "prefill with op offload derived from the H200 lab: host copies at 7.0 GB/s, GPU compute 7.9x the H200's",
        "prefill without op offload 300 tokens/s (assumed, not measured)",
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
