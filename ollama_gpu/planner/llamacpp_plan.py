"""The plan for the llama-server engine: flags, buffers per device, tensors per device, bounds.

The program runs llama-server with ``-ngl 999 --n-cpu-moe N`` (every layer on the GPU, the routed
experts of the first N blocks in host RAM) or with ``--fit on --fit-target margin``. This module
picks N (the smallest that leaves ``margin`` of the free VRAM unused, llamacpp_placement.py), says
what ``--fit`` would pick instead, and bounds decode and prefill for that placement
(llamacpp_speed.py). ``-c`` is the whole KV pool in llama-server, so a stack's per-request context
``num_ctx`` with ``num_parallel`` slots becomes ``-c num_ctx x num_parallel``, and Ollama's
``num_batch`` becomes ``-ub`` (the batch the graph is reserved and copied for).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ollama_gpu.planner.geometry import ModelGeometry
from ollama_gpu.planner.llamacpp_placement import (
    COMPUTE_UNCERTAINTY, CPU, GPU, LLAMA_CPP_BUILD, ExpertOffload, FitPrediction, LlamaPlacement, ServerSettings,
    block_ranges, describe_tensors, fit_prediction, n_cpu_moe_overrides, place_llama_server, smallest_n_cpu_moe,
)
from ollama_gpu.planner.llamacpp_speed import llama_decode_bound, llama_prefill_estimate
from ollama_gpu.planner.placement import Placement
from ollama_gpu.planner.prefill import PrefillEstimate, PrefillModel
from ollama_gpu.planner.speed import DecodeBound
from ollama_gpu.planner.units import format_ollama


@dataclass(frozen=True)
class LlamaServerPlan:
    settings: ServerSettings
    placement: LlamaPlacement
    n_cpu_moe: int | None  # None: no -ngl 999 placement fits (or no GPU)
    chosen: bool  # True when the planner chose N, False when the stack gave it
    fit: FitPrediction | None
    free_vram: int | None
    margin: int
    decode: DecodeBound
    prefill: PrefillEstimate | None
    prefill_source: str
    warnings: tuple[str, ...]
    errors: tuple[str, ...]

    @property
    def summary(self) -> Placement:
        """The placement in the shape the rest of the planner reads (budget, findings, JSON)."""
        p, s = self.placement, self.settings
        gpu_blocks = max(0, min(p.n_layer, p.n_gpu_layers - 1)) if p.n_gpu_layers else 0
        return Placement(
            gpu_blocks=gpu_blocks, block_count=p.n_layer, output_on_gpu=p.n_gpu_layers > 0,
            weights_gpu=p.model_gpu, weights_cpu=p.model_host, kv_gpu=p.kv_gpu, kv_cpu=p.kv_cpu,
            graph_gpu=p.compute.gpu, graph_cpu=p.compute.host + p.compute.output,
            num_ctx=s.slot_cells, num_batch=s.reserve_tokens, kv_cells=s.kv_cells, kv_cache_type=s.cache_type,
            gpu_layer_space=None if self.free_vram is None else self.free_vram - self.margin,
            warnings=self.warnings, errors=self.errors, engine="llama-server", num_parallel=s.parallel,
            flash_attention=s.flash_attention,
        )

    def flags(self) -> list[str]:
        s = self.settings
        flags = ["-c", str(s.ctx_size), "-np", str(s.parallel), "-ub", str(s.ubatch),
                 "-ctk", s.cache_type, "-ctv", s.cache_type, "-fa", "on" if s.flash_attention else "off"]
        if not s.mmap:
            flags += ["--load-mode", "none"]
        if self.free_vram is None:
            return [*flags, "-ngl", "0"]
        if self.n_cpu_moe is not None:
            # --fit would only give up on an explicit -ngl after a dry-run load (common/fit.cpp).
            flags += ["--fit", "off", "-ngl", "999"] + (["--n-cpu-moe", str(self.n_cpu_moe)] if self.n_cpu_moe else [])
        return flags

    def fit_flags(self) -> list[str]:
        """The alternative: let llama-server fit itself, with the same margin."""
        return ["--fit", "on", "--fit-target", str(self.margin // (1 << 20))]

    def to_dict(self) -> dict[str, Any]:
        p, fit = self.placement, self.fit
        return {
            "build": LLAMA_CPP_BUILD,
            "flags": self.flags(),
            "n_cpu_moe": self.n_cpu_moe,
            "n_cpu_moe_chosen_by_planner": self.chosen,
            "cpu_expert_blocks": list(p.cpu_expert_blocks),
            "margin": self.margin,
            "buffers": {
                "model": {GPU: p.model_gpu, p.settings.host_buffer: p.model_host},
                "kv": {GPU: p.kv_gpu, CPU: p.kv_cpu},
                "compute": {GPU: p.compute.gpu, "CUDA_Host": p.compute.host},
                "output": p.compute.output,
                "gpu_total": p.gpu_total,
                "compute_uncertainty": COMPUTE_UNCERTAINTY,
            },
            "tensors": [{"what": what, "device": device, "bytes": size} for what, device, size in describe_tensors(p)],
            "fit": None if fit is None else {
                "flags": self.fit_flags(), "changed": fit.changed, "n_gpu_layers": fit.layers.n_layer, "n_part": fit.layers.n_part,
                "first_partial_fraction": fit.layers.overflow.name, "cpu_expert_blocks": list(fit.cpu_expert_blocks),
                "gpu_total": fit.placement.gpu_total, "steps": list(fit.steps),
            },
            "prefill": None if self.prefill is None else {
                "tokens": self.prefill.tokens, "tokens_per_s": round(self.prefill.tokens_per_s, 1),
                "transfer_bytes": self.prefill.transfer_bytes, "source": self.prefill_source,
            },
        }

    def table_lines(self) -> list[str]:
        p, s = self.placement, self.settings
        rows = [("device", "model", "KV cache", "compute", "total")]
        if self.free_vram is not None:
            rows.append((GPU, *(format_ollama(v) for v in (p.model_gpu, p.kv_gpu, p.compute.gpu, p.gpu_total))))
        host = s.host_buffer if self.free_vram is not None else "CPU_Mapped" if s.mmap else "CPU"
        rows.append((f"host ({host})", *(format_ollama(v) for v in (
            p.model_host, p.kv_cpu, p.compute.host + p.compute.output, p.host_total))))
        lines = [f"llama-server {LLAMA_CPP_BUILD}: " + " ".join(self.flags()), ""]
        lines += [f"{name:<22}{model:>12}{kv:>12}{compute:>12}{total:>12}" for name, model, kv, compute, total in rows]
        lines.append("")
        if self.free_vram is not None:
            n = "none fits" if self.n_cpu_moe is None else str(self.n_cpu_moe)
            lines.append(
                f"experts: --n-cpu-moe {n} ({'smallest that fits' if self.chosen else 'from the stack'}): routed experts of "
                f"blocks {block_ranges(p.cpu_expert_blocks)} in host RAM; GPU total {format_ollama(p.gpu_total)} of "
                f"free {format_ollama(self.free_vram)} - margin {format_ollama(self.margin)} = "
                f"{format_ollama(self.free_vram - self.margin)} (compute buffer estimated, +/- {format_ollama(COMPUTE_UNCERTAINTY)})")
        lines.append("tensors:")
        lines += [f"  {what:<50}{device:>7}{format_ollama(size):>12}" for what, device, size in describe_tensors(p)]
        lines.append(f"  KV cache {s.kv_cells} cells ({s.parallel} slot(s) of {s.slot_cells}) of {s.cache_type}"
                     f"{'' if p.kv_cpu else ' on ' + GPU}")
        if self.fit is not None:
            fit = self.fit
            what = ("no change: everything fits" if not fit.changed else
                    f"-ngl {fit.layers.n_layer}, experts of blocks {block_ranges(fit.cpu_expert_blocks)} in host RAM "
                    f"(first partial block: {fit.layers.overflow.name}), GPU total {format_ollama(fit.placement.gpu_total)}")
            lines.append(f"--fit:   with {' '.join(self.fit_flags())} instead it would run {what}")
        d = self.decode
        lines.append(f"decode:  at most {d.tokens_per_s:.1f} tokens/s with {d.context_fill} tokens in context "
                     f"(reads {format_ollama(d.gpu_bytes_per_token)} from VRAM and {format_ollama(d.cpu_bytes_per_token)} "
                     "from host RAM per token)")
        if self.prefill is not None:
            lines.append(f"prefill: {self.prefill.tokens} tokens at {self.prefill.tokens_per_s:.0f} tokens/s "
                         f"({self.prefill.transfer_bytes / self.prefill.batches / 2**20:.0f} MiB copied per ubatch; "
                         f"{self.prefill_source})")
        return lines


def plan_llama_server(
    geometry: ModelGeometry, *, gpu_free_vram: int | None, num_ctx: int, num_parallel: int, ubatch: int,
    kv_cache_type: str, flash_attention: bool, mmap: bool, margin: int, n_cpu_moe: int | None,
    gpu_bandwidth: float | None, host_bandwidth: float, context_fill: int, prefill_model: PrefillModel | None,
) -> LlamaServerPlan:
    settings = ServerSettings(ctx_size=num_ctx * num_parallel, parallel=num_parallel, ubatch=ubatch,
                              cache_type=kv_cache_type, flash_attention=flash_attention, mmap=mmap)
    warnings: list[str] = []
    errors: list[str] = []
    if geometry.context_length and settings.slot_cells > geometry.context_length:
        warnings.append(f"a slot of {settings.slot_cells} cells exceeds the model's training context "
                        f"{geometry.context_length}: llama.cpp warns and runs it anyway")
    fit = None
    if gpu_free_vram is None:
        placement, chosen_n, chosen = place_llama_server(geometry, settings, n_gpu_layers=0), None, False
    elif n_cpu_moe is None:
        offload: ExpertOffload = smallest_n_cpu_moe(geometry, settings, free_vram=gpu_free_vram, margin=margin)
        placement, chosen_n, chosen = offload.placement, offload.n_cpu_moe, True
        if chosen_n is None:
            errors.append(
                f"llama-server: even with every routed expert in host RAM the GPU needs {format_ollama(placement.gpu_total)}, "
                f"over free {format_ollama(gpu_free_vram)} - margin {format_ollama(margin)}: lower the context or the "
                "KV cache type" + ("" if geometry.is_moe else ", or use the ollama engine (a dense model needs a layer split)"))
        fit = fit_prediction(geometry, settings, free_vram=gpu_free_vram, margin=margin)
    else:
        placement = place_llama_server(geometry, settings, overrides=n_cpu_moe_overrides(n_cpu_moe))
        chosen_n, chosen = n_cpu_moe, False
        if placement.gpu_total > gpu_free_vram - margin:
            errors.append(
                f"llama-server: --n-cpu-moe {n_cpu_moe} needs {format_ollama(placement.gpu_total)} on the GPU, over free "
                f"{format_ollama(gpu_free_vram)} - margin {format_ollama(margin)}: raise it or leave it to the planner")
    if mmap and placement.cpu_expert_blocks:
        # src/llama-model-loader.cpp warns the same: host tensors of a mapped file are pageable.
        warnings.append("experts in host RAM stay in the mapped file (pageable): each prompt batch copies them at "
                        "the pageable rate; --load-mode none keeps them in pinned memory")
    decode = llama_decode_bound(placement, gpu_bandwidth=gpu_bandwidth, host_bandwidth=host_bandwidth,
                                context_fill=context_fill)
    prefill, source = None, "no prefill model for this model and card"
    if prefill_model is not None and gpu_free_vram is not None and settings.reserve_tokens >= 32:
        prefill = llama_prefill_estimate(geometry, placement, settings.slot_cells,
                                         h2d_bandwidth=prefill_model.h2d_bandwidth, gpu=prefill_model.gpu)
        source = (f"whole-slot prompt, host copies at {prefill_model.h2d_bandwidth / 1e9:.0f} GB/s "
                  f"({'pageable, mmap' if mmap else 'pinned, --load-mode none'}), {prefill_model.gpu.source}")
    return LlamaServerPlan(
        settings=settings, placement=placement, n_cpu_moe=chosen_n, chosen=chosen, fit=fit, free_vram=gpu_free_vram,
        margin=margin, decode=decode, prefill=prefill, prefill_source=source, warnings=tuple(warnings),
        errors=tuple(errors),
    )
