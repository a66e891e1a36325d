"""A lab results file beside the planner: placement, prefill model and decode bound, run by run.

    python -m ollama_gpu.gpulab.compare lab/results/*.json [--json | --markdown]

Placement: the planner is given what the server was given (the free VRAM the driver reported just
before the load, OLLAMA_GPU_OVERHEAD, num_ctx, num_batch, KV type, flash attention) and the engine
behaviour the lab measured (op offload on). Prefill: the op-offload model (planner/prefill.py) with
the host-to-device bandwidth measured on the same machine and the GPU term fitted to the same
model's fully resident run. Decode: the bandwidth bound (planner/speed.py) with the GPU's measured
copy bandwidth and the host's measured read bandwidth, beside the measured rate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from typing import Any

from ollama_gpu.gpulab.models import MODELS, scaled_down
from ollama_gpu.gpulab.results import MeasuredPlacement, load, measured_placement
from ollama_gpu.planner.catalog import catalog_geometry
from ollama_gpu.planner.geometry import ModelGeometry
from ollama_gpu.planner.hardware import A10, V100
from ollama_gpu.planner.placement import Placement, place
from ollama_gpu.planner.plan import PlanInputs, build_plan
from ollama_gpu.planner.prefill import GpuPrefill, fit_gpu_prefill, host_weight_bytes, prefill_estimate
from ollama_gpu.planner.speed import decode_bound
from ollama_gpu.planner.units import format_ollama

# The tolerances issue 10 sets for the planner against real CUDA placements.
WEIGHTS_KV_TOLERANCE = 0.01
TOTAL_TOLERANCE = 0.02
GRAPH_TOLERANCE = 0.10


def lab_geometry(results: dict[str, Any]) -> ModelGeometry:
    model = MODELS[results["model"]]
    scale = results["settings"].get("scale_blocks")
    if scale:
        model = scaled_down(model, scale, results["gguf"]["vocab_size"])
    return model.geometry()


def planned_placement(results: dict[str, Any], run: dict[str, Any], geometry: ModelGeometry) -> Placement:
    settings, options = results["settings"], run["options"]
    return place(
        geometry,
        gpu_free_vram=run["gpu_free_before"],
        gpu_overhead=int(run["env"]["OLLAMA_GPU_OVERHEAD"]),
        num_ctx=options["num_ctx"],
        kv_cache_type=run["env"]["OLLAMA_KV_CACHE_TYPE"],
        flash_attention=settings["flash_attention"],
        num_parallel=settings["num_parallel"],
        num_batch=options["num_batch"],
        op_offload=True,
    )


@dataclass(frozen=True)
class Figure:
    name: str
    planned: int
    measured: int
    tolerance: float

    @property
    def error(self) -> float:
        if self.measured == 0:
            return 0.0 if self.planned == 0 else float("inf")
        return self.planned / self.measured - 1

    @property
    def ok(self) -> bool:
        return abs(self.error) <= self.tolerance


def placement_figures(planned: Placement, measured: MeasuredPlacement) -> list[Figure]:
    return [
        Figure("layers offloaded", planned.offloaded_layers, measured.offloaded, 0.0),
        Figure("weights GPU", planned.weights_gpu, measured.weights_gpu, WEIGHTS_KV_TOLERANCE),
        Figure("weights CPU", planned.weights_cpu, measured.weights_cpu, WEIGHTS_KV_TOLERANCE),
        Figure("KV GPU", planned.kv_gpu, measured.kv_gpu, WEIGHTS_KV_TOLERANCE),
        Figure("KV CPU", planned.kv_cpu, measured.kv_cpu, WEIGHTS_KV_TOLERANCE),
        Figure("graph GPU", planned.graph_gpu, measured.graph_gpu, GRAPH_TOLERANCE),
        Figure("graph CPU", planned.graph_cpu, measured.graph_cpu, GRAPH_TOLERANCE),
        Figure("total", planned.total, measured.total, TOTAL_TOLERANCE),
    ]


def gpu_prefill_profile(files: list[dict[str, Any]], geometry: ModelGeometry) -> GpuPrefill | None:
    """The GPU term of the prefill model, from the runs of these files with every layer on the GPU."""
    samples = []
    for results in files:
        for run in results["runs"]:
            measured = measured_placement(run["log_lines"])
            if (measured is None or measured.offloaded != geometry.block_count + 1
                    or run["options"]["num_batch"] != 512 or run["env"]["OLLAMA_KV_CACHE_TYPE"] != "f16"):
                continue
            samples += [(r["prompt_tokens"], r["prompt_eval_duration_ns"] / 1e9) for r in run["requests"]]
    if not samples:
        return None
    return fit_gpu_prefill(samples, f"{files[0]['model']}: fully resident prefill on {gpu_name(files[0])}")


def gpu_name(results: dict[str, Any]) -> str:
    gpus = results["host"].get("gpus") or [{}]
    return gpus[0].get("name", "no GPU")


def h2d_bandwidth(files: list[dict[str, Any]]) -> float | None:
    """Bytes/s of cudaMemcpy from pageable host memory, what the engine's weight copies get. The
    first lease measured only torch's pageable copy (which stages through its own pinned buffer:
    8.3 against 7.0 GB/s on the second lease), so files without the figure use another file's."""
    for results in files:
        figure = results["host"].get("bandwidth", {}).get("h2d_pageable_cudamemcpy_gbps")
        if figure:
            return figure * 1e9
    return None


def host_read_bandwidth(files: list[dict[str, Any]]) -> float | None:
    """Host RAM read bandwidth for the decode bound. The first lease's read figure summed bytes into
    int64 (compute-bound, 1.2 GB/s, below half its own copy figure): files with such a figure use
    another file's valid one."""
    for results in files:
        bandwidth = results["host"].get("bandwidth", {})
        read, copy = bandwidth.get("host_ram_read_gbps"), bandwidth.get("host_ram_copy_gbps")
        if read and copy and read >= copy / 2:
            return read * 1e9
    return None


def moe_runs(files: list[dict[str, Any]], geometry: ModelGeometry, batch: int):
    for results in files:
        for run in results["runs"]:
            measured = measured_placement(run["log_lines"])
            if measured is None or run["options"]["num_batch"] != batch or measured.offloaded > geometry.block_count:
                continue
            yield results, run


def fit_expert_share(files: list[dict[str, Any]], geometry: ModelGeometry, gpu: GpuPrefill, h2d: float,
                     batch: int) -> float | None:
    """The share of experts the lab's random router sends a batch to, fitted by least squares over
    every hybrid run at ``batch``: prefill time = transfer(dense + share x experts) + GPU term."""
    if not geometry.is_moe:
        return None
    numerator = denominator = 0.0
    for results, run in moe_runs(files, geometry, batch):
        planned = planned_placement(results, run, geometry)
        dense = host_weight_bytes(geometry, planned, 0.0)
        experts = host_weight_bytes(geometry, planned, 1.0) - dense
        for request in run["requests"]:
            tokens = request["prompt_tokens"]
            base = prefill_estimate(geometry, planned, tokens, h2d_bandwidth=h2d, gpu=gpu, expert_share=0.0)
            x = base.batches * experts / h2d
            y = request["prompt_eval_duration_ns"] / 1e9 - base.seconds
            numerator += x * y
            denominator += x * x
    return numerator / denominator if denominator else None


def compare_run(results: dict[str, Any], run: dict[str, Any], geometry: ModelGeometry, gpu: GpuPrefill | None,
                h2d: float | None, host_bw: float | None, shares: dict[int, float | None]) -> dict[str, Any]:
    measured = measured_placement(run["log_lines"])
    out: dict[str, Any] = {"point": run["point"], "error": run.get("error")}
    if measured is None:
        return out
    planned = planned_placement(results, run, geometry)
    out["placement"] = [vars(f) | {"error": f.error, "ok": f.ok} for f in placement_figures(planned, measured)]
    bandwidth = results["host"].get("bandwidth", {})
    gpu_bw = bandwidth.get("gpu_d2d_copy_gbps")
    share = shares.get(planned.num_batch)
    rows = []
    for request in run["requests"]:
        row: dict[str, Any] = {
            "prompt_tokens": request["prompt_tokens"],
            "prefill_measured": request["prefill_tokens_per_s"],
            "decode_measured": request["decode_tokens_per_s"],
        }
        if h2d and gpu and request["prefill_tokens_per_s"]:
            estimate = prefill_estimate(geometry, planned, request["prompt_tokens"], h2d_bandwidth=h2d, gpu=gpu,
                                        expert_share=share if geometry.is_moe else None)
            row["prefill_model"] = round(estimate.tokens_per_s, 1)
            row["prefill_error"] = estimate.tokens_per_s / request["prefill_tokens_per_s"] - 1
        if gpu_bw and host_bw and request["decode_tokens_per_s"]:
            bound = decode_bound(geometry, planned, gpu_bandwidth=gpu_bw * 1e9, host_bandwidth=host_bw,
                                 context_fill=request["prompt_tokens"])
            row["decode_bound"] = round(bound.tokens_per_s, 1)
            row["decode_ratio"] = request["decode_tokens_per_s"] / bound.tokens_per_s
        rows.append(row)
    out["speed"] = rows
    out["gpu_blocks"] = planned.gpu_blocks
    out["layout"] = "resident" if planned.all_on_gpu else "moe hybrid" if geometry.is_moe else "dense hybrid"
    out["host_weights"] = planned.weights_cpu
    return out


def compare(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One comparison per file; files of the same model share the prefill model's fitted terms."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for results in files:
        by_model.setdefault(results["model"], []).append(results)
    comparisons = []
    for model, group in by_model.items():
        geometry = lab_geometry(group[0])
        gpu = gpu_prefill_profile(group, geometry)
        h2d = h2d_bandwidth(group)
        host_bw = host_read_bandwidth(group)
        batches = {run["options"]["num_batch"] for results in group for run in results["runs"]}
        shares = {b: fit_expert_share(group, geometry, gpu, h2d, b) if gpu and h2d else None for b in batches}
        for results in group:
            comparisons.append({
                "source": results.get("source"),
                "model": model,
                "gpu": gpu_name(results),
                "gpu_prefill": None if gpu is None else vars(gpu),
                "h2d_bandwidth": h2d,
                "lab_expert_share": shares,
                "host_read_bandwidth": host_bw,
                "runs": [compare_run(results, run, geometry, gpu, h2d, host_bw, shares) for run in results["runs"]],
            })
    return comparisons


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:+.1%}"


def format_comparison(comparison: dict[str, Any]) -> str:
    gpu, share = comparison["gpu_prefill"], comparison["lab_expert_share"]
    lines = [f"{comparison['model']} on {comparison['gpu']} ({comparison['source']})"]
    if gpu:
        lines.append(f"prefill model: GPU {gpu['seconds_per_token'] * 1e6:.0f} µs/token + "
                     f"{gpu['seconds_per_token_squared'] * 1e9:.2f} ns/token², H2D {comparison['h2d_bandwidth'] / 1e9:.1f} GB/s"
                     + "".join(f", lab expert share at batch {b}: {v:.2f}" for b, v in share.items() if v is not None))
    for run in comparison["runs"]:
        lines.append(f"\n[{run['point']}]" + (f" error: {run['error']}" if run.get("error") else ""))
        for figure in run.get("placement", []):
            shown = (str if figure["name"].startswith("layers") else format_ollama)
            lines.append(f"  {figure['name']:<18}{shown(figure['planned']):>12}{shown(figure['measured']):>12}"
                         f"  {_percent(figure['error']):>8}  {'ok' if figure['ok'] else 'OFF'}")
        if run.get("speed"):
            lines.append(f"  {'prompt':>8} {'prefill':>9} {'model':>9} {'err':>7} {'decode':>8} {'bound':>8} {'ratio':>6}")
        for row in run.get("speed", []):
            lines.append(
                f"  {row['prompt_tokens']:>8} {row['prefill_measured'] or 0:>9.1f} {row.get('prefill_model') or 0:>9.1f}"
                f" {_percent(row.get('prefill_error')):>7} {row['decode_measured'] or 0:>8.1f}"
                f" {row.get('decode_bound') or 0:>8.1f} {row.get('decode_ratio') or 0:>6.2f}"
            )
    return "\n".join(lines)


def markdown_rows(comparison: dict[str, Any]) -> list[str]:
    """One README table row per run: placement checks, then prefill and decode, measured vs model."""
    rows = []
    lease = (comparison.get("source") or "").removesuffix(".json").rpartition(".")[2]
    for run in comparison["runs"]:
        figures = {f["name"]: f for f in run.get("placement", [])}
        if not figures:
            rows.append(f"| {comparison['model']} | {lease} | {run['point']} | did not load: {run.get('error')} | | | | |")
            continue
        worst = max((abs(f["error"]) for name, f in figures.items() if not name.startswith(("graph", "layers"))),
                    default=0.0)
        speed = run.get("speed", [])
        prefill = ", ".join(
            f"{r['prompt_tokens']}: {r['prefill_measured']:.0f}" + (f" ({_percent(r.get('prefill_error'))})"
                                                                   if "prefill_error" in r else "")
            for r in speed)
        decode = ", ".join(f"{r['decode_measured']:.1f}/{r.get('decode_bound', 0):.0f}" for r in speed
                           if r["decode_measured"])
        layers = figures["layers offloaded"]
        rows.append(
            f"| {comparison['model']} | {lease} | {run['point']} | {layers['measured']}/{layers['planned']}"
            f" | {format_ollama(figures['weights GPU']['measured'])} / {format_ollama(figures['weights CPU']['measured'])}"
            f" | {worst:.2%} / {_percent(figures['graph GPU']['error'])}"
            f" | {prefill} | {decode} |"
        )
    return rows


MARKDOWN_HEADER = (
    "| model | lease | point | layers on GPU measured/planned | weights GPU / CPU | worst weights·KV·total error / graph GPU error"
    " | prefill tok/s by prompt tokens (model error) | decode tok/s measured/bound |\n|---|---|---|---|---|---|---|---|"
)


# The README's prefill error table, one row per kind of run. MoE hybrids are split by prompt size
# because the lab's random router sends a prompt's first batches to more experts than its later ones.
ERROR_GROUPS = (
    ("fully resident (the GPU term's own fit)", lambda model, layout, tokens: layout == "resident"),
    ("dense hybrid, Qwen3-32B: nothing fitted", lambda model, layout, tokens:
        layout == "dense hybrid" and model.startswith("qwen3")),
    ("dense hybrid, Gemma 3 (sliding window): nothing fitted", lambda model, layout, tokens:
        layout == "dense hybrid" and model.startswith("gemma3")),
    ("MoE hybrid, lab expert share fitted, prompts ≥ 8192 tokens", lambda model, layout, tokens:
        layout == "moe hybrid" and tokens >= 8192),
    ("MoE hybrid, same, 2048–4096-token prompts", lambda model, layout, tokens:
        layout == "moe hybrid" and 2048 <= tokens < 8192),
    ("MoE hybrid, same, 512–1024-token prompts", lambda model, layout, tokens:
        layout == "moe hybrid" and tokens < 2048),
)


def prefill_errors(comparisons: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Every prompt's prefill model error (model/measured − 1), by the README's kinds of run."""
    groups: dict[str, list[float]] = {label: [] for label, _ in ERROR_GROUPS}
    for comparison in comparisons:
        for run in comparison["runs"]:
            for row in run.get("speed", []):
                if "prefill_error" not in row:
                    continue
                for label, member in ERROR_GROUPS:
                    if member(comparison["model"], run["layout"], row["prompt_tokens"]):
                        groups[label].append(row["prefill_error"])
    return groups


def _signed_percent(value: float) -> str:
    return f"{value:+.1%}".replace("-", "−").replace("%", " %")


def error_rows(comparisons: list[dict[str, Any]]) -> list[str]:
    rows = ["| runs | prompts | error (model/measured − 1) |", "|---|---|---|"]
    for label, errors in prefill_errors(comparisons).items():
        errors = sorted(errors)
        rows.append(f"| {label} | {len(errors)} | {_signed_percent(errors[0])} … {_signed_percent(errors[-1])}"
                    f" (median {_signed_percent(statistics.median(errors))}) |")
    return rows


DERIVED_PROMPTS = (2048, 12288, 32768)


def derived_rows() -> list[str]:
    """The A10 and V100 prefill the model derives (not measured): each profile's recipe settings
    (stack defaults: q8_0 KV, 32K context), op offload, num_batch 512 and 2048, per prompt size."""
    rows = ["| card | model | num_batch | layers on GPU | " + " | ".join(f"{n} tokens: tok/s (s)" for n in DERIVED_PROMPTS)
            + " |", "|---|---|---|---|" + "---|" * len(DERIVED_PROMPTS)]
    for profile, overhead in ((A10, 1 << 30), (V100, 512 << 20)):
        for name in ("qwen3:30b-a3b-thinking-2507-q8_0", "qwen3:30b-a3b-thinking-2507-q4_K_M"):
            for batch in (512, 2048):
                plan = build_plan(PlanInputs.for_profile(
                    profile, catalog_geometry(name),
                    num_ctx=32768, num_predict=20480, kv_cache_type="q8_0", gpu_overhead=overhead,
                    num_batch=batch, op_offload=True))
                cells = []
                for tokens in DERIVED_PROMPTS:
                    estimate = plan.inputs.prefill_model.estimate(plan.inputs.geometry, plan.placement, tokens)
                    cells.append(f"{estimate.tokens_per_s:.0f} ({estimate.seconds:.0f})")
                rows.append(f"| {profile.name} | {name.split(':')[1]} | {batch} | {plan.placement.offloaded_layers}/49 | "
                            + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ollama_gpu.gpulab.compare", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--markdown", action="store_true", help="the README table: one row per run")
    parser.add_argument("--derived", action="store_true", help="also print the derived A10/V100 prefill table")
    parser.add_argument("--errors", action="store_true", help="the README's prefill model error table")
    args = parser.parse_args(argv)
    if args.derived:
        print("\n".join(derived_rows()))
    comparisons = compare([load(path) for path in args.results])
    if args.errors:
        print("\n".join(error_rows(comparisons)))
    elif args.markdown:
        print(MARKDOWN_HEADER)
        for comparison in comparisons:
            print("\n".join(markdown_rows(comparison)))
    elif args.json:
        print(json.dumps(comparisons, indent=1))
    else:
        print("\n\n".join(format_comparison(comparison) for comparison in comparisons))
    return 0


if __name__ == "__main__":
    sys.exit(main())
