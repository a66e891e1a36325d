"""One call from settings to a deploy-time plan: placement, speed bound, context budget, findings.

The Pulumi program builds PlanInputs from its stack settings (PlanInputs.for_profile with the
host's profile and any explicit overrides) and calls build_plan before it deploys anything, so a
setting that cannot load or that would make the API hang is reported before a 30 GB pull.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ollama_gpu.planner.budget import ContextBudget, cheaper_fits, context_budget, memory_findings
from ollama_gpu.planner.geometry import ModelGeometry
from ollama_gpu.planner.hardware import HardwareProfile
from ollama_gpu.planner.llamacpp_placement import DEFAULT_FIT_TARGET
from ollama_gpu.planner.llamacpp_plan import LlamaServerPlan, plan_llama_server
from ollama_gpu.planner.placement import CUDA_MINIMUM_MEMORY, Placement, place
from ollama_gpu.planner.prefill import OP_OFFLOAD_MIN_BATCH, PrefillModel, derived_prefill_model
from ollama_gpu.planner.speed import DecodeBound, decode_bound
from ollama_gpu.planner.units import format_gb, format_ollama


ENGINES = ("ollama", "llama-server")


@dataclass(frozen=True, kw_only=True)
class PlanInputs:
    """Everything a plan depends on. Sizes in bytes, bandwidths in bytes/s.

    gpu_free_vram None means a CPU-only host. num_predict < 0 means unbounded, as in Ollama.
    context_fill is how many tokens are already in the cache when the decode bound is taken.
    alternatives are other builds of the same model to suggest when this one spills to the CPU.
    prefill_model, when set and op offload is on, replaces prefill_tokens_per_s in the context
    budget by the op-offload prefill model (planner/prefill.py) at a whole-context prompt;
    prefill_tokens_per_s then serves only plans without op offload.
    """

    geometry: ModelGeometry
    gpu_free_vram: int | None
    gpu_bandwidth: float | None
    host_ram: int
    host_ram_bandwidth: float
    prefill_tokens_per_s: float
    num_ctx: int
    num_predict: int
    kv_cache_type: str = "f16"
    flash_attention: bool = True
    gpu_overhead: int = 0
    num_parallel: int = 1
    num_batch: int = 512
    op_offload: bool = False
    client_timeout_s: float = 300.0
    context_fill: int = 4096
    alternatives: tuple[ModelGeometry, ...] = ()
    assumptions: tuple[str, ...] = ()
    prefill_model: PrefillModel | None = None
    # Several GPUs: each one's free VRAM in CUDA order (wins over gpu_free_vram). num_gpu is the
    # Modelfile parameter, -1 for Ollama's own placement.
    gpu_free_vrams: tuple[int, ...] = ()
    num_gpu: int = -1
    # Where the geometry came from (registry, cache, catalog), as warnings for the plan.
    source_notes: tuple[str, ...] = ()
    # Which server runs the model: Ollama, or llama.cpp's llama-server (llamacpp_plan.py), for
    # which num_batch is -ub, n_cpu_moe None lets the planner choose the smallest that fits, the
    # margin is VRAM left unused (--fit-target) and mmap is --load-mode auto (False: none).
    engine: str = "ollama"
    n_cpu_moe: int | None = None
    llama_margin: int = DEFAULT_FIT_TARGET
    llama_mmap: bool = True

    def __post_init__(self) -> None:
        if (self.gpu_free_vram is not None or self.gpu_free_vrams) and not self.gpu_bandwidth:
            raise ValueError("gpu_free_vram is set but gpu_bandwidth is not (--gpu-bandwidth)")
        for label in ("host_ram", "host_ram_bandwidth", "prefill_tokens_per_s", "client_timeout_s"):
            if getattr(self, label) <= 0:
                raise ValueError(f"{label} must be positive")
        if self.context_fill < 0:
            raise ValueError("context_fill must not be negative")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")
        if self.engine == "llama-server" and len(self.gpu_free_vrams) > 1:
            raise ValueError("llama-server plans cover one GPU; give --gpu-free-vram, not --gpus")
        if self.n_cpu_moe is not None and self.n_cpu_moe < 0:
            raise ValueError("n_cpu_moe must not be negative")
        if self.llama_margin < 0:
            raise ValueError("the llama-server margin must not be negative")

    @classmethod
    def for_profile(cls, profile: HardwareProfile, geometry: ModelGeometry, **settings: Any) -> PlanInputs:
        """Inputs from a hardware profile; keyword settings (num_ctx, host_ram, ...) override it.

        With op offload on and no prefill_tokens_per_s given (the measured override), prefill comes
        from the profile's derived prefill model when the lab has a fit for the model.
        """
        gpu = profile.gpu
        if gpu and settings.get("engine") == "llama-server" and "prefill_tokens_per_s" not in settings:
            # Host experts are copied from pageable memory with mmap, from pinned memory without.
            h2d = gpu.host_to_device_bandwidth if settings.get("llama_mmap", True) else gpu.host_to_device_pinned_bandwidth
            settings.setdefault("prefill_model", derived_prefill_model(
                geometry.name, h2d_bandwidth=h2d, slowdown_vs_lab=gpu.prefill_slowdown_vs_lab, card=gpu.name,
            ))
        elif gpu and settings.get("op_offload") and "prefill_tokens_per_s" not in settings:
            settings.setdefault("prefill_model", derived_prefill_model(
                geometry.name, h2d_bandwidth=gpu.host_to_device_bandwidth,
                slowdown_vs_lab=gpu.prefill_slowdown_vs_lab, card=gpu.name,
            ))
        defaults: dict[str, Any] = {
            "gpu_free_vram": gpu.free_vram if gpu else None,
            "gpu_bandwidth": gpu.memory_bandwidth if gpu else None,
            "host_ram": profile.host.ram,
            "host_ram_bandwidth": profile.host.ram_bandwidth,
            "prefill_tokens_per_s": profile.prefill_tokens_per_s,
            "assumptions": profile.assumptions,
        }
        return cls(geometry=geometry, **{**defaults, **settings})


@dataclass(frozen=True)
class Plan:
    """The outcome; to_dict is the stable JSON form other tools read."""

    inputs: PlanInputs
    placement: Placement
    decode: DecodeBound
    context: ContextBudget
    warnings: tuple[str, ...]
    errors: tuple[str, ...]
    prefill_tokens_per_s: float
    prefill_source: str
    llama_server: LlamaServerPlan | None = None

    def to_dict(self) -> dict[str, Any]:
        p, inputs = self.placement, self.inputs
        extra = {} if self.llama_server is None else {"llama_server": self.llama_server.to_dict()}
        return extra | {
            "model": inputs.geometry.name,
            "layers": {
                "on_gpu": p.gpu_blocks,
                "total": p.block_count,
                "output_on_gpu": p.output_on_gpu,
                "offloaded": p.offloaded_layers,  # Ollama's "offloaded N/M layers to GPU"
                "offloaded_of": p.block_count + 1,
            },
            "memory": {
                "weights": {"gpu": p.weights_gpu, "cpu": p.weights_cpu},
                "kv_cache": {"gpu": p.kv_gpu, "cpu": p.kv_cpu},
                "graph": {"gpu": p.graph_gpu, "cpu": p.graph_cpu},
                "total": p.total,
                "gpu_needed": p.gpu_total,
                "host_ram_needed": p.cpu_total,
                "gpu_layer_space": p.gpu_layer_space,
            },
            "engine": p.engine,
            "gpus": [
                {
                    "index": share.index,
                    "free_vram": share.free_vram,
                    "blocks": [min(share.blocks), max(share.blocks)] if share.blocks else None,
                    "output_layer": share.output,
                    "layers": share.layers,
                    "weights": share.weights,
                    "kv_cache": share.kv,
                    "graph": share.graph,
                    "total": share.total,
                    "layer_space": share.layer_space,
                }
                for share in p.gpus
            ],
            "settings": {
                "num_ctx": p.num_ctx,
                "num_batch": p.num_batch,
                "num_parallel": p.num_parallel,
                "num_gpu": inputs.num_gpu,
                "kv_cache_type": p.kv_cache_type,
                "kv_cells": p.kv_cells,
                "flash_attention": p.flash_attention,
                "op_offload": inputs.op_offload,
                "gpu_free_vram": inputs.gpu_free_vram,
                "gpu_free_vram_per_gpu": list(inputs.gpu_free_vrams) or None,
                "gpu_overhead": inputs.gpu_overhead,
                "host_ram": inputs.host_ram,
            },
            "speed": {
                "decode_tokens_per_s_bound": round(self.decode.tokens_per_s, 1),
                "context_fill": self.decode.context_fill,
                "gpu_bytes_per_token": self.decode.gpu_bytes_per_token,
                "cpu_bytes_per_token": self.decode.cpu_bytes_per_token,
            },
            "context": {
                "max_prompt_tokens": self.context.max_prompt_tokens,
                "timely_prompt_tokens": self.context.timely_prompt_tokens,
                "suggested_num_predict": self.context.suggested_num_predict,
                "num_predict": inputs.num_predict,
            },
            "warnings": list(self.warnings),
            "errors": list(self.errors),
            "assumptions": {
                "prefill_tokens_per_s": round(self.prefill_tokens_per_s, 1),
                "prefill_source": self.prefill_source,
                "client_timeout_s": inputs.client_timeout_s,
                "gpu_bandwidth": inputs.gpu_bandwidth,
                "host_ram_bandwidth": inputs.host_ram_bandwidth,
                "context_fill_tokens": inputs.context_fill,
                "notes": list(inputs.assumptions),
            },
        }


def build_plan(inputs: PlanInputs) -> Plan:
    """Places the model, bounds decode speed, budgets the context and collects findings."""
    if inputs.engine == "llama-server":
        return _build_llama_server_plan(inputs)
    placement_settings = {
        "gpu_free_vram": inputs.gpu_free_vram,
        "gpu_overhead": inputs.gpu_overhead,
        "num_ctx": inputs.num_ctx,
        "kv_cache_type": inputs.kv_cache_type,
        "flash_attention": inputs.flash_attention,
        "num_parallel": inputs.num_parallel,
        "num_batch": inputs.num_batch,
        "op_offload": inputs.op_offload,
        "gpu_free_vrams": inputs.gpu_free_vrams or None,
        "num_gpu": inputs.num_gpu,
    }
    placement = place(inputs.geometry, **placement_settings)
    decode = decode_bound(
        inputs.geometry,
        placement,
        gpu_bandwidth=inputs.gpu_bandwidth,
        host_bandwidth=inputs.host_ram_bandwidth,
        context_fill=inputs.context_fill,
    )
    prefill_rate, prefill_source = inputs.prefill_tokens_per_s, "stated rate (profile or hardware.prefillTokensPerSecond)"
    offloads = inputs.op_offload and inputs.gpu_free_vram is not None and placement.num_batch >= OP_OFFLOAD_MIN_BATCH
    if inputs.prefill_model and offloads:
        # The slowest tokens per second of any prompt that fits: a whole-context first prompt.
        prefill_rate = inputs.prefill_model.estimate(inputs.geometry, placement, placement.num_ctx).tokens_per_s
        prefill_source = f"op-offload prefill model, {inputs.prefill_model.source}"
    budget = context_budget(
        num_ctx=placement.num_ctx,
        num_predict=inputs.num_predict,
        prefill_tokens_per_s=prefill_rate,
        client_timeout_s=inputs.client_timeout_s,
    )
    memory_warnings, errors = memory_findings(
        placement, has_gpu=placement.gpu_layer_space is not None, host_ram=inputs.host_ram
    )
    advice = cheaper_fits(
        placement, inputs.alternatives, lambda geometry: place(geometry, **placement_settings)
    )
    return Plan(
        inputs=inputs,
        placement=placement,
        decode=decode,
        context=budget,
        warnings=(*inputs.source_notes, *inputs.geometry.notes, *placement.warnings, *memory_warnings,
                  *budget.warnings, *advice),
        errors=(*placement.errors, *errors),
        prefill_tokens_per_s=prefill_rate,
        prefill_source=prefill_source,
    )


def _build_llama_server_plan(inputs: PlanInputs) -> Plan:
    llama = plan_llama_server(
        inputs.geometry, gpu_free_vram=inputs.gpu_free_vrams[0] if inputs.gpu_free_vrams else inputs.gpu_free_vram,
        num_ctx=inputs.num_ctx, num_parallel=inputs.num_parallel, ubatch=inputs.num_batch,
        kv_cache_type=inputs.kv_cache_type, flash_attention=inputs.flash_attention, mmap=inputs.llama_mmap,
        margin=inputs.llama_margin, n_cpu_moe=inputs.n_cpu_moe, gpu_bandwidth=inputs.gpu_bandwidth,
        host_bandwidth=inputs.host_ram_bandwidth, context_fill=inputs.context_fill, prefill_model=inputs.prefill_model,
    )
    placement = llama.summary
    prefill_rate, prefill_source = inputs.prefill_tokens_per_s, "stated rate (profile or hardware.prefillTokensPerSecond)"
    if llama.prefill is not None:
        prefill_rate, prefill_source = llama.prefill.tokens_per_s, f"llama-server prefill model, {llama.prefill_source}"
    budget = context_budget(num_ctx=placement.num_ctx, num_predict=inputs.num_predict,
                            prefill_tokens_per_s=prefill_rate, client_timeout_s=inputs.client_timeout_s)
    memory_warnings, errors = memory_findings(placement, has_gpu=placement.gpu_layer_space is not None,
                                              host_ram=inputs.host_ram)
    return Plan(
        inputs=inputs, placement=placement, decode=llama.decode, context=budget,
        warnings=(*inputs.source_notes, *inputs.geometry.notes, *placement.warnings, *memory_warnings, *budget.warnings),
        errors=(*placement.errors, *errors), prefill_tokens_per_s=prefill_rate, prefill_source=prefill_source,
        llama_server=llama,
    )


def format_plan_table(plan: Plan) -> str:
    """Fixed-width summary for people (``make plan``), sizes as Ollama's log prints them."""
    if plan.llama_server is not None:
        return _format_llama_server_table(plan, plan.llama_server)
    p, inputs, d = plan.placement, plan.inputs, plan.decode
    rows = [("device", "weights", "KV cache", "graph", "total")]
    for share in p.gpus:
        label = "GPU" if len(p.gpus) == 1 else f"GPU{share.index}"
        rows.append((label, *(format_ollama(v) for v in (share.weights, share.kv, share.graph, share.total))))
    rows.append(("CPU", *(format_ollama(v) for v in (p.weights_cpu, p.kv_cpu, p.graph_cpu, p.cpu_total))))
    rows.append(("all", *(format_ollama(v) for v in (
        p.weights_gpu + p.weights_cpu, p.kv_gpu + p.kv_cpu, p.graph_gpu + p.graph_cpu, p.total))))
    lines = [
        f"Plan for {inputs.geometry.name} ({inputs.geometry.architecture}, {format_gb(inputs.geometry.file_size)})",
        f"num_ctx {p.num_ctx} x {p.num_parallel} parallel = {p.kv_cells} KV cells of {p.kv_cache_type}, "
        f"flash attention {'on' if p.flash_attention else 'off'}, num_batch {p.num_batch}",
        "",
        *(f"{name:<8}{weights:>12}{kv:>12}{graph:>12}{total:>12}" for name, weights, kv, graph, total in rows),
        "",
        f"layers:  offloaded {p.offloaded_layers}/{p.block_count + 1} layers to GPU: {p.gpu_blocks} of "
        f"{p.block_count} blocks, output layer on {'GPU' if p.output_on_gpu else 'CPU'}",
    ]
    for share in p.gpus:
        label = "" if len(p.gpus) == 1 else f"GPU{share.index}: "
        held = f"blocks {min(share.blocks)}-{max(share.blocks)}" if share.blocks else "no blocks"
        lines.append(
            f"         {label}layer space {format_ollama(share.layer_space)} = free {format_ollama(share.free_vram)}"
            f" - minimum {format_ollama(CUDA_MINIMUM_MEMORY)} - overhead {format_ollama(inputs.gpu_overhead)}"
            f" - graph {format_ollama(share.graph)}"
            + ("" if len(p.gpus) == 1 else f"; holds {held}{' and the output layer' if share.output else ''}")
        )
    reads = f"{format_gb(d.cpu_bytes_per_token)} from host RAM"
    if d.gpu_bytes_per_token:
        reads = f"{format_gb(d.gpu_bytes_per_token)} from VRAM and {reads}"
    lines.append(
        f"decode:  at most {d.tokens_per_s:.1f} tokens/s with {d.context_fill} tokens in context "
        f"(reads {reads} per token)"
    )
    lines.append(
        f"context: first prompt up to {plan.context.max_prompt_tokens} tokens "
        f"({plan.prefill_tokens_per_s:.0f} tokens/s x {inputs.client_timeout_s:g} s timeout = "
        f"{plan.context.timely_prompt_tokens}; num_predict {inputs.num_predict}, num_ctx {p.num_ctx})"
    )
    lines.append(f"         prefill: {plan.prefill_source}")
    for title, items in (("warnings", plan.warnings), ("errors", plan.errors), ("assumptions", inputs.assumptions)):
        lines.append(f"{title}:" + ("" if items else " none"))
        lines.extend(f"  - {item}" for item in items)
    return "\n".join(lines)



def _format_llama_server_table(plan: Plan, llama: LlamaServerPlan) -> str:
    inputs = plan.inputs
    lines = [
        f"Plan for {inputs.geometry.name} ({inputs.geometry.architecture}, {format_gb(inputs.geometry.file_size)}) "
        "on llama-server",
        *llama.table_lines(),
        f"context: first prompt up to {plan.context.max_prompt_tokens} tokens "
        f"({plan.prefill_tokens_per_s:.0f} tokens/s x {inputs.client_timeout_s:g} s timeout = "
        f"{plan.context.timely_prompt_tokens}; num_predict {inputs.num_predict}, num_ctx {plan.placement.num_ctx})",
    ]
    for title, items in (("warnings", plan.warnings), ("errors", plan.errors), ("assumptions", inputs.assumptions)):
        lines.append(f"{title}:" + ("" if items else " none"))
        lines.extend(f"  - {item}" for item in items)
    return "\n".join(lines)
