"""The machine a lab run happened on: GPU, PCIe link, host CPU and RAM, and measured bandwidths.

The bandwidths are the ones the prefill and decode models need: host-to-device copies from
pageable memory (what op offload streams: the engine keeps CPU-resident weights in ordinary host
buffers, ml/backend/ggml/ggml.go New) and from pinned memory (the link's ceiling), and host RAM
bandwidth with all cores (what decode of CPU-resident layers reads at). Timings use torch when it
is there (the GPU machine), and skip the GPU figures when there is no GPU.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from typing import Any

GIB = 1 << 30


def _run(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def gpu_query(*fields: str) -> list[dict[str, str]]:
    """nvidia-smi --query-gpu, one dict per GPU; empty without a GPU."""
    text = _run("nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits")
    return [dict(zip(fields, (value.strip() for value in line.split(",")))) for line in text.splitlines() if line]


def gpu_apps() -> list[dict[str, str]]:
    """nvidia-smi --query-compute-apps: the processes holding GPU memory (MiB), one dict each."""
    fields = ("pid", "used_memory")
    text = _run("nvidia-smi", f"--query-compute-apps={','.join(fields)}", "--format=csv,noheader,nounits")
    return [dict(zip(fields, (value.strip() for value in line.split(",")))) for line in text.splitlines() if line]


def gpu_free_bytes() -> tuple[int, int] | None:
    """(free, total) of GPU 0 as the driver reports them now, in bytes (nvidia-smi gives MiB)."""
    rows = gpu_query("memory.free", "memory.total")
    if not rows:
        return None
    return int(rows[0]["memory.free"]) << 20, int(rows[0]["memory.total"]) << 20


def _cpu() -> dict[str, Any]:
    info: dict[str, Any] = {"logical_cpus": os.cpu_count(), "machine": platform.machine()}
    text = _run("lscpu")
    for key in ("Model name", "Socket(s)", "Core(s) per socket", "Thread(s) per core", "L3 cache", "Flags"):
        match = re.search(rf"^{re.escape(key)}:\s*(.*)$", text, re.MULTILINE)
        if match:
            value = match.group(1).strip()
            if key == "Flags":
                value = " ".join(flag for flag in value.split() if flag.startswith(("avx", "amx", "f16c", "fma")))
            info[key.lower().replace("(s)", "s").replace(" ", "_")] = value
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            name, _, rest = line.partition(":")
            if name in ("MemTotal", "MemAvailable"):
                info[name] = int(rest.split()[0]) * 1024
    return info


def _bandwidths() -> dict[str, Any]:
    """GB/s (1e9 bytes/s), median of several timed copies of 1 GiB after a warm-up."""
    try:
        import torch
    except ImportError:
        return {"error": "torch not installed"}
    results: dict[str, Any] = {"torch": torch.__version__, "cpu_threads": torch.get_num_threads()}

    def median_rate(copy, nbytes: int, repeats: int = 5, sync=lambda: None) -> float:
        copy()
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            copy()
            sync()
            times.append(time.perf_counter() - start)
        return round(nbytes / sorted(times)[len(times) // 2] / 1e9, 2)

    size = GIB
    source = torch.randint(0, 255, (size,), dtype=torch.uint8)
    target = torch.empty_like(source)
    # A copy reads and writes every byte: count both, as STREAM's "copy" does.
    results["host_ram_copy_gbps"] = median_rate(lambda: target.copy_(source), 2 * size)
    ones = torch.ones(size // 4, dtype=torch.float32)
    results["host_ram_read_gbps"] = median_rate(lambda: ones.sum(), size)
    del ones
    if torch.cuda.is_available():
        device = torch.device("cuda:0")
        results["gpu_name"] = torch.cuda.get_device_name(device)
        on_gpu = torch.empty(size, dtype=torch.uint8, device=device)
        sync = torch.cuda.synchronize
        pinned = source.pin_memory()
        results["h2d_pageable_gbps"] = median_rate(lambda: on_gpu.copy_(source), size, sync=sync)
        results["h2d_pinned_gbps"] = median_rate(lambda: on_gpu.copy_(pinned, non_blocking=True), size, sync=sync)
        results["d2h_pinned_gbps"] = median_rate(lambda: pinned.copy_(on_gpu, non_blocking=True), size, sync=sync)
        results.update(_runtime_copies(source.numpy(), on_gpu.data_ptr(), median_rate, sync))
        other = torch.empty_like(on_gpu)
        results["gpu_d2d_copy_gbps"] = median_rate(lambda: other.copy_(on_gpu), 2 * size, repeats=10, sync=sync)
        del on_gpu, other, pinned
        torch.cuda.empty_cache()
    return results


def _runtime_copies(host, device_pointer: int, median_rate, sync) -> dict[str, float]:
    """cudaMemcpy from ordinary (pageable) host memory, as ggml copies a host-resident weight for op
    offload, whole and in 204 MiB pieces (one Q8_0 expert tensor of Qwen3-30B-A3B). torch's own
    pageable copy stages through a pinned buffer of its own and is much slower, so it is not the
    figure the engine sees."""
    try:
        from cupy.cuda import runtime
    except ImportError:
        return {}
    pointer, size = host.ctypes.data, host.nbytes
    piece = 204 << 20

    def whole() -> None:
        runtime.memcpy(device_pointer, pointer, size, runtime.memcpyHostToDevice)

    def pieces() -> None:
        for offset in range(0, size - piece + 1, piece):
            runtime.memcpy(device_pointer + offset, pointer + offset, piece, runtime.memcpyHostToDevice)

    return {
        "h2d_pageable_cudamemcpy_gbps": median_rate(whole, size, sync=sync),
        "h2d_pageable_cudamemcpy_204mib_gbps": median_rate(pieces, size // piece * piece, sync=sync),
    }


def _guarded(measure) -> dict[str, Any]:
    """A failed measurement is recorded, not fatal: the sweep still has the host's other facts."""
    try:
        return measure()
    except Exception as error:  # noqa: BLE001 (any failure of a driver or library call)
        return {"error": f"{type(error).__name__}: {error}"}


def collect() -> dict[str, Any]:
    gpus = gpu_query(
        "name", "driver_version", "memory.total", "memory.free", "pcie.link.gen.current", "pcie.link.gen.max",
        "pcie.link.width.current", "pcie.link.width.max", "clocks.max.sm", "clocks.max.memory", "power.limit",
        "compute_cap",
    )
    nvcc = _run("nvcc", "--version").splitlines()
    return {
        "collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "gpus": gpus,
        "nvcc": nvcc[-1] if nvcc else None,
        "cpu": _cpu(),
        "bandwidth": _guarded(_bandwidths),
    }


if __name__ == "__main__":
    json.dump(collect(), sys.stdout, indent=2)
    print()
