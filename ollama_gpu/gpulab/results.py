"""Reads a lab results file: what the server placed where, exactly, and what each run measured.

The server's summary lines ("model weights ... 18.5 GiB") carry one decimal; the debug line
``msg=memory success=true required.<device>.Weights="[...]" ...`` that the runner logs for every
layout it tries carries each layer's bytes, so the lab compares with those. The last such line of
a run is the layout the server kept (llm/server.go ollamaServer.Load logs one per attempt).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_REQUIRED = re.compile(r'required\.([\w-]+)\.(Weights|Cache|Graph)=("\[[^\]]*\]"|\[[^\]]*\]|\d+)')
_INPUT_WEIGHTS = re.compile(r"required\.InputWeights=(\d+)")
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


@dataclass(frozen=True)
class MeasuredPlacement:
    """Bytes per device as the runner allocated them, and the layers it put on the GPU."""

    gpu_layers: tuple[int, ...]  # indices of layers (blocks, then the output layer) with GPU weights
    offloaded: int
    layer_count: int
    weights_gpu: int
    weights_cpu: int
    kv_gpu: int
    kv_cpu: int
    graph_gpu: int
    graph_cpu: int

    @property
    def total(self) -> int:
        return self.weights_gpu + self.weights_cpu + self.kv_gpu + self.kv_cpu + self.graph_gpu + self.graph_cpu


def _numbers(text: str) -> list[int]:
    return [int(value) for value in text.strip('"[]').split()]


def measured_placement(log_lines: list[str]) -> MeasuredPlacement | None:
    """The final layout of one run, from its captured log lines; None if it never loaded."""
    memory_lines = [line for line in log_lines if "msg=memory" in line and "success=true" in line]
    offloaded = [m for line in log_lines if (m := _OFFLOADED.search(line))]
    if not memory_lines or not offloaded:
        return None
    line = memory_lines[-1]
    per_device: dict[str, dict[str, list[int]]] = {}
    for device, kind, value in _REQUIRED.findall(line):
        per_device.setdefault(device, {})[kind] = _numbers(value)
    input_weights = int(match.group(1)) if (match := _INPUT_WEIGHTS.search(line)) else 0
    cpu = per_device.pop("CPU", {})
    gpu_weights = [sum(values) for values in zip(*(d.get("Weights", []) for d in per_device.values()))]
    return MeasuredPlacement(
        gpu_layers=tuple(index for index, size in enumerate(gpu_weights) if size),
        offloaded=int(offloaded[-1].group(1)),
        layer_count=int(offloaded[-1].group(2)),
        weights_gpu=sum(gpu_weights),
        weights_cpu=input_weights + sum(cpu.get("Weights", [])),
        kv_gpu=sum(sum(d.get("Cache", [])) for d in per_device.values()),
        kv_cpu=sum(cpu.get("Cache", [])),
        graph_gpu=sum(sum(d.get("Graph", [])) for d in per_device.values()),
        graph_cpu=sum(cpu.get("Graph", [])),
    )


def load(path: str | Path) -> dict[str, Any]:
    """A results file, with its file name under "source" (comparisons name their file)."""
    path = Path(path)
    return json.loads(path.read_text()) | {"source": path.name}
