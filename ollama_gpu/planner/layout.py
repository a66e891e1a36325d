"""Ollama 0.24.0's layer assignment across one or several GPUs (llm/server.go), transcribed.

A layout maps GPUs to the layers they hold; layer index block_count is the output layer. The
functions keep the engine's names and order of operations, including its float32 arithmetic in
findBestFit/greedyFit (Go's float32 products truncated to uint64), because the capacity factor's
binary search decides how layers split between cards.

What the engine does with several GPUs, read from the source:
- buildLayout sorts GPUs by free memory, largest first (sort.Reverse(ml.ByFreeMemory); Go's
  sort.Sort is an insertion sort for up to 12 elements, so equal cards keep their order), and
  subtracts from each card ml DeviceInfo.MinimumMemory (457 MiB on CUDA), OLLAMA_GPU_OVERHEAD and
  the compute graph that card reported for the previous layout (0 for a card that had no layers).
- assignLayers first tries the largest card alone, then the two largest, and so on (fewest GPUs
  that hold everything); findBestFit binary-searches the smallest capacity factor that still
  places as many layers as capacity 1.0, which balances the split in proportion to free memory.
- greedyFit walks layers from the last one down and fills the *last* GPU of the chosen set first:
  the output layer and the last blocks land on the card with the least free memory among those
  used, earlier blocks on larger cards.
- If not every layer fits, the whole search is redone without the output layer (it stays on CPU).
- num_gpu >= 0 (requestedLayers) stops after that many layers and, on the last GPU tried, lets a
  card take them whatever its free memory (capacity up to 1000: "pretend we have almost infinite
  VRAM"). num_gpu 0 makes the scheduler pass no GPU at all (server/sched.go processPending).
- main_gpu: llm/server.go only forwards it to the llama.cpp runner, which gives it to llama.cpp as
  main_gpu with the default layer split, where it does not move layers; the Go engine ignores it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

F32 = np.float32


@dataclass(frozen=True)
class Gpu:
    """One card as buildLayout sees it: its CUDA index and the bytes left for layers."""

    index: int
    free: int


# A layout: (gpu index, layer indices) pairs in the order the engine builds them.
Layout = tuple[tuple[int, tuple[int, ...]], ...]


def layer_sum(layout: Layout) -> int:
    return sum(len(layers) for _, layers in layout)


def layout_key(layout: Layout) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """ml.GPULayersList.Hash: only GPUs that hold layers, in order."""
    return tuple((gpu, tuple(layers)) for gpu, layers in layout if layers)


def used_gpus(layout: Layout) -> set[int]:
    return {gpu for gpu, layers in layout if layers}


def greedy_fit(layers: list[int], gpus: list[Gpu], capacity: F32, requested: int) -> list[list]:
    """llm/server.go greedyFit."""
    device = len(gpus) - 1
    result: list[list] = [[gpus[device].index, []]]
    free_space = int(F32(gpus[device].free) * capacity)
    for i in range(len(layers) - 1, -1, -1):
        if requested >= 0 and len(layers) - 1 - i >= requested:
            break
        while True:
            if layers[i] <= free_space:
                result[0][1].insert(0, i)
                free_space -= layers[i]
                break
            device -= 1
            if device < 0:
                return result
            result.insert(0, [gpus[device].index, []])
            free_space = int(F32(gpus[device].free) * capacity)
    return result


def _sum(assignment: list[list]) -> int:
    return sum(len(layers) for _, layers in assignment)


def find_best_fit(layers: list[int], gpus: list[Gpu], requested: int, force_request: bool) -> list[list]:
    """llm/server.go findBestFit; every card is discrete, so ml.ByPerformance gives one group."""
    high, low = F32(1), F32(0)
    if requested >= 0 and force_request:
        high = F32(1000)
    best = greedy_fit(layers, gpus, high, requested)
    most = _sum(best)
    while F32(high - low) > F32(1e-6):
        mid = F32((low + high) / F32(2))
        attempt = greedy_fit(layers, gpus, mid, requested)
        if _sum(attempt) == most:
            high, best = mid, attempt
        else:
            low = mid
    return best


def assign_layers(layers: list[int], gpus: list[Gpu], requested: int, last_used_gpu: int) -> Layout:
    """llm/server.go assignLayers with requireFull false and OLLAMA_SCHED_SPREAD unset."""
    assignment: list[list] = []
    for _ in range(2):
        requested = min(len(layers), requested)
        for i in range(last_used_gpu, len(gpus)):
            force = i == len(gpus) - 1
            assignment = find_best_fit(layers, gpus[: i + 1], requested, force)
            if _sum(assignment) in (len(layers), requested):
                break
        if _sum(assignment) == len(layers):
            break
        layers = layers[:-1]
    return tuple((gpu, tuple(sorted(chosen))) for gpu, chosen in assignment)


def build_layout(layer_costs: list[int], gpus: list[Gpu], graphs: dict[int, int] | None, *, reserve: int,
                 requested: int, backoff: F32 = F32(0)) -> Layout:
    """llm/server.go buildLayout for CUDA cards.

    ``gpus`` carry their free VRAM; ``graphs`` the compute graph each card reported for the last
    allocation (absent: none), or None before the runner has reported anything, when every card
    counts as having no room and every layer as costing nothing (createLayout with a nil memory);
    ``reserve`` is MinimumMemory + OLLAMA_GPU_OVERHEAD.
    """
    ordered = sorted(gpus, key=lambda gpu: gpu.free, reverse=True)
    last_used = 0
    available = []
    for position, gpu in enumerate(ordered):
        if graphs is None:
            available.append(Gpu(gpu.index, 0))
            continue
        graph = graphs.get(gpu.index, 0)
        if graph:
            last_used = position
        reserved = int(F32(gpu.free) * backoff) + reserve + graph
        available.append(Gpu(gpu.index, gpu.free - reserved if gpu.free > reserved else 0))
    if not available:
        return ()
    costs = [0] * len(layer_costs) if graphs is None else list(layer_costs)
    return assign_layers(costs, available, requested, last_used)


class LayoutError(ValueError):
    """Ollama gives up loading: the message is the engine's own."""


def converge(layer_costs: list[int], gpus: list[Gpu], *, reserve: int, graphs_of: Callable[[Layout], dict[int, int]],
             fits: Callable[[Layout], bool], num_gpu: int = -1) -> Layout:
    """llm/server.go ollamaServer.Load (the Go engine) for the first model on an idle host.

    The runner measures each layout it is given; ``graphs_of(layout)`` is the compute graph each
    GPU would report for it and ``fits(layout)`` whether the allocation succeeds. Layouts are
    recomputed from each measurement until one repeats or asks for more layers; more layers are
    only taken through "exploring intermediate layers"; a failed allocation adds a 10% backoff.
    """
    def create(graphs: dict[int, int] | None, backoff: F32, requested: int) -> Layout:
        return build_layout(layer_costs, gpus, graphs, reserve=reserve, requested=requested, backoff=backoff)

    backoff = F32(0)
    layout = create(None, backoff, num_gpu)
    past: set = set()
    for _operation in ("fit", "alloc"):
        operation_done = False
        while not operation_done:
            measured, success = graphs_of(layout), fits(layout)
            past.add(layout_key(layout))
            while True:
                proposal = create(measured, backoff, num_gpu)
                if layout_key(proposal) not in past and layer_sum(proposal) <= layer_sum(layout):
                    layout = proposal
                    break
                if num_gpu < 0 and layer_sum(proposal) - layer_sum(layout) > 1:
                    explored = None
                    for count in range(layer_sum(proposal) - 1, layer_sum(layout) - 1, -1):
                        trial = create(measured, backoff, count)
                        success = fits(trial)
                        if success and layer_sum(trial) <= layer_sum(create(graphs_of(trial), backoff, num_gpu)):
                            explored = trial
                            break
                    if explored is not None:
                        layout = explored
                        past.clear()
                        operation_done = True
                        break
                if success:
                    operation_done = True
                    break
                if num_gpu >= 0:
                    raise LayoutError(f"memory layout cannot be allocated with num_gpu = {num_gpu}")
                if backoff > 1:
                    raise LayoutError("memory layout cannot be allocated")
                backoff = F32(backoff + F32(0.1))
    if not fits(layout):
        raise LayoutError("failed to commit memory for model")
    return layout
