"""What parallel request slots (OLLAMA_NUM_PARALLEL, the stack's server.env.numParallel) cost and buy.

Ollama sizes the KV cache for num_ctx x num_parallel cells, since every slot may fill its whole
context, so each extra slot claims VRAM that held layers; the placement at each slot count is the
engine's own (placement.py), and what it pushes out of VRAM goes to the CPU, whose part of every
decode step is the slow one. The decode figures are speed.py's bandwidth bounds: a lone user on the
layout (the other slots idle), and every slot busy, per stream and in aggregate (speed.py's
docstring states the batch model: shared weights read once per step, routed experts as the union
the streams picked, each stream's own KV). Not modelled: compute, which grows with the batch; a new
request's prefill, which shares the batch and stalls the others' decoding while it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ollama_gpu.planner.plan import Plan, PlanInputs, build_plan
from ollama_gpu.planner.speed import DecodeBound, decode_bound
from ollama_gpu.planner.units import format_ollama

DEFAULT_SLOTS = (1, 2, 4)


@dataclass(frozen=True)
class ParallelOption:
    """One slot count: its plan (placement, findings), a lone stream's and all streams' bounds."""

    plan: Plan
    alone: DecodeBound
    all_busy: DecodeBound

    @property
    def num_parallel(self) -> int:
        return self.plan.placement.num_parallel


@dataclass(frozen=True)
class ParallelTable:
    options: tuple[ParallelOption, ...]

    @property
    def baseline(self) -> ParallelOption:
        return self.options[0]

    def blocks_moved_to_cpu(self, option: ParallelOption) -> int:
        """Blocks the first (smallest) slot count keeps in VRAM that this one leaves in host RAM."""
        return self.baseline.plan.placement.gpu_blocks - option.plan.placement.gpu_blocks

    def to_dict(self) -> list[dict[str, Any]]:
        rows = []
        for option in self.options:
            p = option.plan.placement
            rows.append({
                "num_parallel": option.num_parallel,
                "kv_cells": p.kv_cells,
                "blocks_on_gpu": p.gpu_blocks,
                "output_on_gpu": p.output_on_gpu,
                "blocks_moved_to_cpu": self.blocks_moved_to_cpu(option),
                "memory": {
                    "weights": {"gpu": p.weights_gpu, "cpu": p.weights_cpu},
                    "kv_cache": {"gpu": p.kv_gpu, "cpu": p.kv_cpu},
                    "gpu_needed": p.gpu_total,
                    "host_ram_needed": p.cpu_total,
                },
                "decode_tokens_per_s_bound": {
                    "one_stream_alone": round(option.alone.tokens_per_s, 1),
                    "per_stream_all_busy": round(option.all_busy.tokens_per_s, 1),
                    "aggregate_all_busy": round(option.all_busy.aggregate_tokens_per_s, 1),
                },
                "prefill_tokens_per_s": round(option.plan.prefill_tokens_per_s, 1),
                "errors": list(option.plan.errors),
            })  # fmt: skip
        return rows


def parallel_table(inputs: PlanInputs, slots: Sequence[int] = DEFAULT_SLOTS) -> ParallelTable:
    """The plan of ``inputs`` at each slot count (ascending), with the decode bounds at each."""
    if not slots or min(slots) < 1:
        raise ValueError("parallel slot counts must be positive")
    options = []
    for count in sorted(set(slots)):
        plan = build_plan(dataclasses.replace(inputs, num_parallel=count))

        def bound(streams: int, plan: Plan = plan) -> DecodeBound:
            return decode_bound(
                inputs.geometry, plan.placement, gpu_bandwidth=inputs.gpu_bandwidth,
                host_bandwidth=inputs.host_ram_bandwidth, context_fill=inputs.context_fill, streams=streams,
            )  # fmt: skip

        # The engine may refuse parallel slots (single-sequence architectures): all busy is then one.
        options.append(ParallelOption(plan, bound(1), bound(plan.placement.num_parallel)))
    return ParallelTable(tuple(options))


def format_parallel_table(table: ParallelTable) -> str:
    """The plan's "parallel slots" section: what moves to the CPU and the decode bounds per slot count."""
    headers = ("parallel", "KV cells", "blocks on GPU", "to CPU", "CPU weights", "CPU KV", "host RAM",
               "alone tok/s", "each tok/s", "aggregate tok/s")  # fmt: skip
    rows = []
    for option in table.options:
        p = option.plan.placement
        rows.append((
            str(option.num_parallel), str(p.kv_cells), f"{p.gpu_blocks}/{p.block_count}",
            f"+{table.blocks_moved_to_cpu(option)} blocks", format_ollama(p.weights_cpu), format_ollama(p.kv_cpu),
            format_ollama(p.cpu_total), f"{option.alone.tokens_per_s:.1f}", f"{option.all_busy.tokens_per_s:.1f}",
            f"{option.all_busy.aggregate_tokens_per_s:.1f}",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    fill = table.baseline.alone.context_fill
    lines = [
        f"parallel slots (OLLAMA_NUM_PARALLEL): KV = num_ctx x slots; decode bounds with {fill} tokens in each "
        "stream's context, routed experts read as the union of uniform routing",
        *("  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths))).rstrip()
          for row in (headers, *rows)),
    ]  # fmt: skip
    for option in table.options:
        lines.extend(f"  - parallel {option.num_parallel}: {error}" for error in option.plan.errors)
    return "\n".join(lines)
