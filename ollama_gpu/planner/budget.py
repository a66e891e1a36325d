"""Context budget and the operator's lessons turned into checks on a placement.

The budget follows the field notes: a GUI client gives up after a fixed timeout (Cherry Studio: 5
minutes) while the runner keeps prefilling and blocks everyone else, so the first prompt of a
conversation must prefill within that timeout; and prompt + num_predict must stay within num_ctx,
because overflowing the context clears the KV cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ollama_gpu.planner.geometry import ModelGeometry
from ollama_gpu.planner.placement import Placement
from ollama_gpu.planner.units import format_gb, format_ollama

# field-notes.md "Why the API hung": at 85% RAM use or more, weights page out and the API stalls.
HOST_RAM_WARNING_SHARE = 0.85


@dataclass(frozen=True)
class ContextBudget:
    """Prompt sizes that answer in time and fit next to num_predict in num_ctx.

    suggested_num_predict is num_ctx minus the largest timely prompt, or None when prefill is fast
    enough to fill the whole context within the timeout (then the timeout limits nothing).
    """

    timely_prompt_tokens: int
    max_prompt_tokens: int
    suggested_num_predict: int | None
    warnings: tuple[str, ...]


def context_budget(
    *, num_ctx: int, num_predict: int, prefill_tokens_per_s: float, client_timeout_s: float
) -> ContextBudget:
    """``num_predict`` < 0 means unbounded (Ollama's -1 and -2)."""
    if prefill_tokens_per_s <= 0 or client_timeout_s <= 0:
        raise ValueError("prefill rate and client timeout must be positive")
    timely = int(prefill_tokens_per_s * client_timeout_s)
    timeout_binds = timely < num_ctx
    suggested = num_ctx - timely if timeout_binds else None
    warnings = []
    if num_predict < 0:
        warnings.append(
            "num_predict is unbounded: a long reasoning run can fill num_ctx, which clears the KV cache"
        )
        room_for_prompt = num_ctx
    else:
        room_for_prompt = max(0, num_ctx - num_predict)
        if timeout_binds and num_predict + timely > num_ctx:
            warnings.append(
                f"num_predict {num_predict} + a {timely}-token prompt (the most that prefills within the "
                f"{client_timeout_s:g} s client timeout) exceeds num_ctx {num_ctx}, and overflowing the context "
                f"clears the KV cache; num_predict {suggested} would fit"
            )
    return ContextBudget(
        timely_prompt_tokens=timely,
        max_prompt_tokens=min(timely, room_for_prompt),
        suggested_num_predict=suggested,
        warnings=tuple(warnings),
    )


def memory_findings(placement: Placement, *, has_gpu: bool, host_ram: int) -> tuple[list[str], list[str]]:
    """Warnings and errors about where the model landed.

    Ollama refuses a load whose host-side share exceeds free RAM plus swap (llm/server.go
    verifyLayout); the planner compares with the whole host RAM, so the real margin is smaller.
    """
    warnings: list[str] = []
    errors: list[str] = []
    host_need = placement.cpu_total
    if host_need > host_ram:
        errors.append(
            f"model cannot load: the host part needs {format_ollama(host_need)} "
            f"but the host has {format_ollama(host_ram)} of RAM"
        )
    elif host_need > HOST_RAM_WARNING_SHARE * host_ram:
        warnings.append(
            f"host RAM use {host_need / host_ram:.0%} ({format_ollama(host_need)} of {format_ollama(host_ram)}) "
            f"is over {HOST_RAM_WARNING_SHARE:.0%}: weights may page out and stall the API"
        )
    if has_gpu and placement.offloaded_layers == 0:
        warnings.append("no layer fits on the GPU: the model runs on the CPU only")
    return warnings, errors


def cheaper_fits(
    placement: Placement,
    alternatives: Iterable[ModelGeometry],
    place_alternative: Callable[[ModelGeometry], Placement],
) -> list[str]:
    """Advice when the planned model spills to the CPU but another build of it, placed with the
    same settings by ``place_alternative``, would sit entirely in VRAM."""
    if placement.gpu_layer_space is None or placement.all_on_gpu:
        return []
    advice = []
    for geometry in alternatives:
        candidate = place_alternative(geometry)
        if candidate.all_on_gpu:
            advice.append(
                f"{geometry.name} ({format_gb(geometry.file_size)}) fits entirely in VRAM with these settings "
                f"({format_ollama(candidate.gpu_total)} on the GPU): no CPU share, faster prefill and decode"
            )
    return advice
