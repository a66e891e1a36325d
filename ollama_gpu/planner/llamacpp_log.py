"""llama-server's own memory lines and command line, read back to compare with the plan.

The pinned build logs one line per buffer (sizes in MiB with two decimals, so to about 5 KiB):
- src/llama-model.cpp load_tensors: ``load_tensors: %12s model buffer size = %8.2f MiB``
- src/llama-kv-cache.cpp: ``llama_kv_cache: %10s KV buffer size = %8.2f MiB``
- src/llama-context.cpp: ``llama_context: %10s compute buffer size = %8.2f MiB`` and
  ``%10s  output buffer size = %8.2f MiB``
where the name is the buffer type: ``CUDA0`` for the GPU, ``CUDA_Host`` for pinned host memory,
``CPU_Mapped`` for the mapped file, ``CPU`` for plain host memory. Only the last line per buffer
and kind counts: a verbose --fit logs its dry runs before the real load.

A lab results file for llama-server (lab/results/*llama-server*.json) is read like the Ollama
ones (ollama_gpu/gpulab/results.py): its ``runs`` each carry ``log_lines`` and the server's
``args`` (the flags after the binary), plus ``gpu_free_before`` for --fit runs; settings_from_args
turns the flags back into the planner's inputs, so a new run is data, not code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ollama_gpu.planner.geometry import ModelGeometry
from ollama_gpu.planner.llamacpp_placement import (
    COMPUTE_UNCERTAINTY, DEFAULT_FIT_TARGET, LlamaPlacement, ServerSettings, fit_prediction, n_cpu_moe_overrides,
    place_llama_server,
)
from ollama_gpu.planner.units import MIB

_BUFFER = re.compile(r"(\S+)\s+(model|KV|compute|output) buffer size =\s*([\d.]+) MiB")
_GPU_BUFFER = re.compile(r"^CUDA\d+$")


@dataclass(frozen=True)
class MeasuredBuffers:
    """Bytes per buffer name for each kind (model, KV, compute, output)."""

    sizes: dict[str, dict[str, int]] = field(default_factory=dict)

    def kind(self, kind: str) -> dict[str, int]:
        return self.sizes.get(kind, {})

    def gpu(self, kind: str) -> int:
        return sum(size for name, size in self.kind(kind).items() if _GPU_BUFFER.match(name))

    def host(self, kind: str) -> int:
        return sum(size for name, size in self.kind(kind).items() if not _GPU_BUFFER.match(name))


def measured_buffers(log_lines: Iterable[str]) -> MeasuredBuffers | None:
    """The buffers of the last load in these lines; None when none was logged."""
    sizes: dict[str, dict[str, int]] = {}
    for line in log_lines:
        if (match := _BUFFER.search(line)) is not None:
            name, kind, mib = match.groups()
            sizes.setdefault(kind, {})[name] = round(float(mib) * MIB)
    return MeasuredBuffers(sizes) if sizes else None


@dataclass(frozen=True)
class ServerArgs:
    """What a llama-server command line asks for, in the planner's terms."""

    settings: ServerSettings
    n_gpu_layers: int | None  # None: -ngl not given or auto (--fit decides; without it, all layers)
    n_cpu_moe: int | None
    fit: bool
    fit_target: int


_TRUTHY = ("on", "enabled", "true", "1")
_VALUE_FLAGS = {
    "-c": "ctx", "--ctx-size": "ctx", "-np": "parallel", "--parallel": "parallel", "-ub": "ubatch",
    "--ubatch-size": "ubatch", "-b": "batch", "--batch-size": "batch", "-ctk": "ctk", "--cache-type-k": "ctk",
    "-ctv": "ctv", "--cache-type-v": "ctv", "-fa": "fa", "--flash-attn": "fa", "-ngl": "ngl", "--gpu-layers": "ngl",
    "--n-gpu-layers": "ngl", "-ncmoe": "ncmoe", "--n-cpu-moe": "ncmoe", "-fit": "fit", "--fit": "fit",
    "-fitt": "fitt", "--fit-target": "fitt", "--load-mode": "load", "-m": "model", "--model": "model",
}


def settings_from_args(args: Sequence[str]) -> ServerArgs:
    """Reads the flags the planner models (common/arg.cpp spellings); others are ignored."""
    values: dict[str, str] = {}
    flags: set[str] = set()
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in _VALUE_FLAGS and index + 1 < len(args):
            values[_VALUE_FLAGS[arg]] = args[index + 1]
            index += 2
            continue
        flags.add(arg)
        index += 1
    if values.get("ctk", "f16") != values.get("ctv", values.get("ctk", "f16")):
        raise ValueError("the planner models one KV cache type for K and V")
    ngl = values.get("ngl")
    if "ctx" not in values or int(values["ctx"]) <= 0:
        raise ValueError("no -c: llama-server would take the model's training context, which the planner does not plan")
    # tools/server/server.cpp: without -np, 4 slots share one unified cache.
    parallel = int(values.get("parallel", -1))
    settings = ServerSettings(
        ctx_size=int(values["ctx"]),
        parallel=parallel if parallel > 0 else 4,
        kv_unified=parallel <= 0 or "--kv-unified" in flags or "-kvu" in flags,
        ubatch=int(values.get("ubatch", 512)),
        batch=int(values.get("batch", 2048)),
        cache_type=values.get("ctk", "f16"),
        # common/arg.cpp is_truthy / is_autoy; "auto" turns flash attention on where the GPU supports it.
        flash_attention=values.get("fa", "auto") in (*_TRUTHY, "auto", "-1"),
        mmap=values.get("load", "auto") in ("auto", "mmap", "mmap+mlock") and "--no-mmap" not in flags,
    )
    return ServerArgs(
        settings=settings,
        n_gpu_layers=None if ngl in (None, "auto") else 999 if ngl == "all" else int(ngl),
        n_cpu_moe=int(values["ncmoe"]) if "ncmoe" in values else None,
        fit=values.get("fit", "on") in _TRUTHY,
        fit_target=int(values["fitt"].split(",")[0]) * MIB if "fitt" in values else DEFAULT_FIT_TARGET,
    )


def planned_for_args(geometry: ModelGeometry, args: ServerArgs, gpu_free: int | None) -> LlamaPlacement:
    """What the planner predicts for this command line: an explicit -ngl / --n-cpu-moe placement,
    or, with neither and --fit on, the fit's choice for ``gpu_free`` (the free VRAM the driver
    reported before the start). The fit only sees free - margin, so a lab that emulates a smaller
    card with a larger --fit-target is exact in the fit's terms."""
    overrides = n_cpu_moe_overrides(args.n_cpu_moe or 0)
    if args.n_gpu_layers is None and args.n_cpu_moe is None and args.fit:
        if gpu_free is None:
            raise ValueError("a --fit run needs the free VRAM before the start")
        return fit_prediction(geometry, args.settings, free_vram=gpu_free, margin=args.fit_target).placement
    ngl = 999 if args.n_gpu_layers is None else args.n_gpu_layers
    return place_llama_server(geometry, args.settings, n_gpu_layers=ngl, overrides=overrides)


@dataclass(frozen=True)
class BufferFigure:
    """One buffer planned against measured: within ``relative`` of it, or ``absolute`` bytes."""

    name: str
    planned: int
    measured: int
    relative: float = 0.0
    absolute: int = 0
    at_least: bool = False  # the measured buffer may be larger (a mapped file span)

    @property
    def ok(self) -> bool:
        if self.at_least:
            return self.measured >= self.planned * (1 - self.relative)
        return abs(self.planned - self.measured) <= max(self.relative * self.measured, self.absolute)


def buffer_figures(planned: LlamaPlacement, measured: MeasuredBuffers) -> list[BufferFigure]:
    """The comparisons issue 10 asks of the planner: weights and KV within 1% per device, the GPU
    compute buffer within the planner's stated uncertainty. A mapped host buffer spans the file
    range around the host tensors, so it is only checked to be at least their size."""
    mapped = planned.settings.mmap
    return [
        BufferFigure("model GPU", planned.model_gpu, measured.gpu("model"), relative=0.01),
        BufferFigure("model host", planned.model_host, measured.host("model"), relative=0.01, at_least=mapped),
        BufferFigure("KV GPU", planned.kv_gpu, measured.gpu("KV"), relative=0.01),
        BufferFigure("KV host", planned.kv_cpu, measured.host("KV"), relative=0.01),
        BufferFigure("compute GPU", planned.compute.gpu, measured.gpu("compute"), absolute=COMPUTE_UNCERTAINTY),
        BufferFigure("compute host", planned.compute.host, measured.host("compute"), absolute=COMPUTE_UNCERTAINTY),
    ]
