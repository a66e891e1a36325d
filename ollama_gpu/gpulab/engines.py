"""Ollama and llama-server side by side on the same model and the same emulated card.

    python -m ollama_gpu.gpulab.engines lab/results/*.json lab/results/llama-server/*.json [--markdown]

For each model and card (the first part of a point's label: a10, v100, a size in GiB) every run of
either engine is one row: its placement (Ollama's layers on the GPU; llama-server's ``--fit`` or
``--n-cpu-moe N``), the GPU memory it took (the driver's free VRAM before the load less after it,
the same measure for both engines), prefill tokens/s by prompt size and decode tokens/s at each
context fill, and each figure's ratio to the Ollama run of that card measured at the same size.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any

from ollama_gpu.gpulab.results import load, measured_placement

GIB = 1 << 30


@dataclass
class EngineRun:
    model: str
    card: str
    engine: str
    placement: str
    source: str
    gpu_used: int | None
    prefill: dict[int, float] = field(default_factory=dict)  # prompt tokens -> tokens/s
    decode: dict[int, float] = field(default_factory=dict)  # context fill -> tokens/s
    error: str = ""
    variant: str = ""  # an Ollama point's num_batch or KV-type override ("b2048", "kq8_0")

    @property
    def lease(self) -> str:
        """The results file's lease tag, "qwen3-30b-a3b-q8_0.lease-c.json" -> "lease-c"; "" for a
        file named otherwise (a run's fresh output)."""
        tag = self.source.removesuffix(".json").rpartition(".")[2]
        return tag if tag.startswith("lease-") else ""


def _card(point: str) -> str:
    return point.split("/")[0]


def _gpu_used(run: dict[str, Any]) -> int | None:
    before, after = run.get("gpu_free_before"), run.get("gpu_free_after_load")
    return before - after if before is not None and after is not None else None


def engine_runs(results: dict[str, Any]) -> list[EngineRun]:
    engine = results.get("engine", "ollama")
    runs = []
    for run in results["runs"]:
        if engine == "ollama":
            measured = measured_placement(run.get("log_lines", []))
            placement = f"{measured.offloaded}/{measured.layer_count} layers" if measured else "not loaded"
            variant = "/".join(run["point"].split("/")[1:])
            placement += f" {variant}" if variant else ""
        else:
            variant = ""
            placement = "--fit" if run.get("n_cpu_moe") is None else f"--n-cpu-moe {run['n_cpu_moe']}"
            if run.get("mmap"):
                placement += " mmap"
            if run.get("ubatch"):
                placement += f" -ub {run['ubatch']}"
        row = EngineRun(results["model"], _card(run["point"]), engine, placement, results["source"],
                        _gpu_used(run), error=run.get("error", ""), variant=variant)
        for request in run.get("requests", []):
            size = request["requested_prompt_tokens"]
            if request.get("prefill_tokens_per_s"):
                row.prefill[size] = request["prefill_tokens_per_s"]
            if request.get("decode_tokens_per_s"):
                row.decode[size] = request["decode_tokens_per_s"]
        runs.append(row)
    return runs


def _ratio(value: float, baseline: float | None) -> str:
    return f"{value:.0f} (×{value / baseline:.1f})" if baseline else f"{value:.0f}"


def _decode_ratio(value: float, baseline: float | None) -> str:
    return f"{value:.1f} (×{value / baseline:.1f})" if baseline else f"{value:.1f}"


def table(runs: list[EngineRun]) -> list[str]:
    """Markdown rows, Ollama first within each model and card; ratios are to the Ollama run with
    the most sizes measured (the same card, the default num_batch)."""
    lines = ["| model | card | engine | lease | placement | GPU used | prefill tok/s by prompt tokens | "
             "decode tok/s by context fill |", "|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[EngineRun]] = {}
    for run in runs:
        groups.setdefault((run.model, run.card), []).append(run)
    for (model, card), group in sorted(groups.items()):
        baselines = [r for r in group if r.engine == "ollama" and not r.variant]
        baseline = max(baselines, key=lambda r: (len(r.prefill), r.source), default=None)
        group.sort(key=lambda r: (r.engine != "ollama", r.placement, r.source))
        for run in group:
            reference = baseline if run is not baseline else None
            prefill = ", ".join(f"{size}: {_ratio(rate, reference and reference.prefill.get(size))}"
                                for size, rate in sorted(run.prefill.items()))
            decode = ", ".join(f"{size}: {_decode_ratio(rate, reference and reference.decode.get(size))}"
                               for size, rate in sorted(run.decode.items()))
            used = f"{run.gpu_used / GIB:.1f} GiB" if run.gpu_used is not None else ""
            lines.append(f"| {model} | {card} | {run.engine} | {run.lease} | {run.placement} | {used} | "
                         f"{prefill or run.error[:60]} | {decode} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ollama_gpu.gpulab.engines", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+")
    args = parser.parse_args(argv)
    runs = [run for path in args.results for run in engine_runs(load(path))]
    print("\n".join(table(runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
