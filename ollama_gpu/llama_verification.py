"""What llama-server did with the model, read back from its own log and /props, compared with what
the stack asked for (and, given a planned memory split, with the plan).

llama.cpp logs one line per buffer it allocates (b11312: src/llama-model.cpp load_tensors,
src/llama-kv-cache.cpp, src/llama-context.cpp):
    load_tensors:        CUDA0 model buffer size = 15234.56 MiB
    llama_kv_cache:        CUDA0 KV buffer size =  1632.00 MiB
    sched_reserve:        CUDA0 compute buffer size =   300.75 MiB
and the KV cache's cell count and types (`llama_kv_cache: size = ... K (q8_0): ... V (q8_0): ...`).
A buffer named CUDA<n> is on that GPU; CPU, CPU_Mapped, CPU_REPACK and CUDA_Host (pinned host
memory) are host RAM. Pure Python, so tests feed it real server output directly.
"""

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from ollama_gpu.verification import Check, Verification

if TYPE_CHECKING:
    from ollama_gpu.settings import Settings

PROPS_MARK, LOG_MARK = "### props", "### placement log"
MIB = 2**20
_BUFFER_LINE = re.compile(r"(\S+) (model|KV|compute) buffer size = +([\d.]+) MiB")
_KV_TYPES = re.compile(r"llama_kv_cache: size = .*K \((\w+)\): .*V \((\w+)\)")
_SLOT_CONTEXT = re.compile(r"n_ctx_slot = (\d+)")
_KINDS = {"model": "weights", "KV": "kv_cache", "compute": "graph"}


def device_side(buffer: str) -> str:
    return "gpu" if re.fullmatch(r"CUDA\d+", buffer) else "cpu"


@dataclass
class LlamaServerReport:
    # kind -> buffer name as logged -> bytes; "weights" may list several host buffers.
    buffers: dict[str, dict[str, int]] = field(default_factory=dict)
    kv_types: Optional[tuple[str, str]] = None
    slot_context: Optional[int] = None
    props: dict[str, Any] = field(default_factory=dict)

    @property
    def memory(self) -> dict[str, dict[str, int]]:
        """kind -> {"gpu"|"cpu": bytes}, the shape of the plan's memory figures."""
        sides: dict[str, dict[str, int]] = {}
        for kind, buffers in self.buffers.items():
            for name, size in buffers.items():
                side = device_side(name)
                sides.setdefault(kind, {})[side] = sides.get(kind, {}).get(side, 0) + size
        return sides


def parse_report(text: str) -> LlamaServerReport:
    report = LlamaServerReport()
    head, _, log_text = text.partition(LOG_MARK)
    props_json = head.split(PROPS_MARK, 1)[-1].strip()
    if props_json:
        report.props = json.loads(props_json)
    previous_kind = None
    for line in log_text.splitlines():
        if match := _BUFFER_LINE.search(line):
            name, kind, mib = match.group(1), _KINDS[match.group(2)], float(match.group(3))
            # Each start logs the model's buffers first: a new start's figures replace the old ones.
            if kind == "weights" and previous_kind not in (None, "weights"):
                report.buffers = {}
            report.buffers.setdefault(kind, {})[name] = round(mib * MIB)
            previous_kind = kind
        elif match := _KV_TYPES.search(line):
            report.kv_types = (match.group(1), match.group(2))
        elif match := _SLOT_CONTEXT.search(line):
            report.slot_context = int(match.group(1))
    return report


def compare(report: LlamaServerReport, *, num_ctx: int, kv_cache_type: str,
            planned_memory: Optional[dict[str, dict[str, int]]], tolerance: float) -> Verification:
    checks: list[Check] = []
    warnings: list[str] = []
    slot_context = report.slot_context
    if slot_context is None:
        slot_context = (report.props.get("default_generation_settings") or {}).get("n_ctx")
    checks.append(Check("context_per_slot", num_ctx, slot_context, slot_context == num_ctx))
    if report.kv_types is None:
        warnings.append("the server logged no KV cache types: not compared")
    else:
        checks.append(Check("kv_cache_type", kv_cache_type, "/".join(report.kv_types),
                            report.kv_types == (kv_cache_type, kv_cache_type)))
    memory = report.memory
    for kind in ("weights", "kv_cache", "graph"):
        if kind not in memory:
            warnings.append(f"the server logged no {kind.replace('_', ' ')} buffer sizes: not compared")
            continue
        for side in ("gpu", "cpu"):
            actual = memory[kind].get(side, 0)
            if planned_memory is None:
                checks.append(Check(f"memory.{kind}.{side}", None, actual, True))
                continue
            predicted = int(planned_memory[kind][side])
            # Compute buffers are measured by ggml at start: shown, never a reason to warn.
            ok = kind == "graph" or abs(actual - predicted) <= max(tolerance * predicted, MIB)
            checks.append(Check(f"memory.{kind}.{side}", predicted, actual, ok))
    warnings += [f"{check.figure}: the stack asks for {check.predicted}, the server reports {check.actual}"
                 for check in checks if not check.ok and not check.figure.startswith("memory.")]
    warnings += [f"{check.figure}: planned {check.predicted} bytes, the server reports {check.actual}"
                 for check in checks if not check.ok and check.figure.startswith("memory.")]
    return Verification(checks=checks, warnings=warnings)


def expected_report(settings: "Settings") -> dict[str, str]:
    """What the report step itself holds the server to under verification.failOnMismatch (empty
    values: nothing): the context per slot and the KV cache type the stack asks for. The memory
    split stays a warning: under --fit llama.cpp chooses it at start."""
    strict = settings.verification.fail_on_mismatch
    return {
        "EXPECTED_SLOT_CONTEXT": str(settings.model.parameters.num_ctx) if strict else "",
        "EXPECTED_KV_TYPE": settings.server.env.kv_cache_type if strict else "",
    }


def verify_llama_server(settings: "Settings", report_text: str,
                        planned_memory: Optional[dict[str, dict[str, int]]] = None) -> Optional[Verification]:
    """None while the report step has not run (preview, offline)."""
    if PROPS_MARK not in (report_text or ""):
        return None
    return compare(
        parse_report(report_text), num_ctx=settings.model.parameters.num_ctx,
        kv_cache_type=settings.server.env.kv_cache_type, planned_memory=planned_memory,
        tolerance=settings.verification.tolerance,
    )
