"""Plan versus what the server really did, read back after the model is loaded.

The verify script prints `/api/ps` and the server's memory placement log lines; this module parses
that report and compares it, figure by figure, with the planner's prediction. The A10 log in
field-notes.md is the motivating case: q8_0 KV was requested, the log showed an f16-sized cache,
and nobody noticed. Pure Python, so tests feed it real server output directly.
"""

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from ollama_gpu.planner.gguf_geometry import compare_with_model_info
from ollama_gpu.planner.units import format_ollama
from ollama_gpu.stack_plan import model_geometry

if TYPE_CHECKING:
    from ollama_gpu.planner.plan import Plan
    from ollama_gpu.settings import Settings

UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
_MEMORY_LINE = re.compile(r'msg="(model weights|kv cache|compute graph)" device=(\S+) size="?([\d.]+) (B|KiB|MiB|GiB)')
_TOTAL_LINE = re.compile(r'msg="total memory" size="?([\d.]+) (B|KiB|MiB|GiB)')
_OFFLOADED_LINE = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
# Ollama's own words when it drops a requested KV cache type or flash attention (llm/server.go).
_SETTING_DROPPED = re.compile(
    r'msg="(quantized kv cache requested but flash attention disabled|'
    r"OLLAMA_FLASH_ATTENTION must be enabled to use a quantized OLLAMA_KV_CACHE_TYPE|"
    r"kv cache type not supported by model|unsupported OLLAMA_KV_CACHE_TYPE|"
    r'flash attention enabled but not supported by (gpu|model))"'
)
_KINDS = {"model weights": "weights", "kv cache": "kv_cache", "compute graph": "graph"}
PS_MARK, SHOW_MARK, LOG_MARK = "### api/ps", "### api/show", "### placement log"


@dataclass
class ServerReport:
    """What the server says about the loaded model; bytes are as precise as its one-decimal log."""

    memory: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> {"gpu"|"cpu": bytes}
    # kind -> {device name as logged (CUDA0, CUDA1, CPU): bytes}; "gpu" above sums the GPUs.
    devices: dict[str, dict[str, int]] = field(default_factory=dict)
    total: Optional[int] = None
    layers_offloaded: Optional[int] = None
    layers_total: Optional[int] = None
    dropped_settings: list[str] = field(default_factory=list)
    loaded: Optional[dict[str, Any]] = None  # the model's /api/ps entry
    model_info: dict[str, Any] = field(default_factory=dict)  # the base model's GGUF metadata


def parse_report(text: str, model: str) -> ServerReport:
    report = ServerReport()
    head, _, log_text = text.partition(LOG_MARK)
    head, _, show_json = head.partition(SHOW_MARK)
    ps_json = head.split(PS_MARK, 1)[-1].strip()
    if ps_json:
        models = json.loads(ps_json).get("models", [])
        report.loaded = next((m for m in models if m.get("name") in (model, f"{model}:latest")), None)
    if show_json.strip():
        report.model_info = json.loads(show_json).get("model_info") or {}
    for line in log_text.splitlines():
        # Each load prints a full summary; the last one is the layout that stuck.
        if match := _MEMORY_LINE.search(line):
            kind, device, number, unit = match.groups()
            report.devices.setdefault(_KINDS[kind], {})[device] = round(float(number) * UNITS[unit])
        elif match := _TOTAL_LINE.search(line):
            report.total = round(float(match.group(1)) * UNITS[match.group(2)])
        elif match := _OFFLOADED_LINE.search(line):
            report.layers_offloaded, report.layers_total = int(match.group(1)), int(match.group(2))
        elif match := _SETTING_DROPPED.search(line):
            if match.group(1) not in report.dropped_settings:
                report.dropped_settings.append(match.group(1))
    for kind, devices in report.devices.items():
        for device, size in devices.items():
            side = "cpu" if device.upper() == "CPU" else "gpu"
            report.memory.setdefault(kind, {})[side] = report.memory.get(kind, {}).get(side, 0) + size
    return report


@dataclass
class Check:
    figure: str
    predicted: Any
    actual: Any
    ok: bool


@dataclass
class Verification:
    checks: list[Check]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return not self.warnings

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checks": [vars(check) for check in self.checks],
            "warnings": self.warnings,
        }


def _close(predicted: int, actual: int, tolerance: float) -> bool:
    # The log rounds to one decimal of its unit, so allow that much on top of the tolerance.
    rounding = 0.05 * max((u for u in UNITS.values() if u <= max(actual, 1)), default=1)
    return abs(actual - predicted) <= max(tolerance * predicted, rounding)


def compare(plan: dict[str, Any], report: ServerReport, *, num_ctx: int, kv_cache_type: str, tolerance: float) -> Verification:
    """`plan` is the planner's to_dict(); `num_ctx` and `kv_cache_type` are what the stack asked for."""
    checks: list[Check] = []
    warnings = [
        f"Ollama dropped a requested setting: '{reason}' — the KV cache type {kv_cache_type!r} and/or "
        "flash attention are not in effect; set server.env.flashAttention: true and keep kvCacheType "
        "to what the model supports"
        for reason in report.dropped_settings
    ]
    if report.loaded is None:
        warnings.append("the alias is not loaded (/api/ps does not list it): the warm-up did not stick")
    else:
        context = report.loaded.get("context_length")
        checks.append(Check("context_length", num_ctx, context, context == num_ctx))

    for kind in ("weights", "kv_cache", "graph"):
        if kind not in report.memory:
            # No line at all (e.g. server.env.debug off) is "not reported", not zero bytes.
            warnings.append(f"the server logged no {kind.replace('_', ' ')} sizes: not compared")
            continue
        for side in ("gpu", "cpu"):
            predicted = int(plan["memory"][kind][side])
            # A device the server logged no line for holds none of it.
            actual = report.memory[kind].get(side, 0)
            # Graph reserves are measured by ggml at load time; the plan states them as estimates.
            ok = _close(predicted, actual, tolerance if kind != "graph" else max(tolerance, 0.3))
            checks.append(Check(f"memory.{kind}.{side}", predicted, actual, ok))
    gpus = plan.get("gpus") or []
    if len(gpus) > 1:
        # ml/device.go BackendMemory.Log prints one line per GPU that holds something, named by
        # the backend (CUDA0, CUDA1, ...); the plan's shares are in the same CUDA order.
        for share in gpus:
            device = f"CUDA{share['index']}"
            for kind, key in (("weights", "weights"), ("kv_cache", "kv_cache"), ("graph", "graph")):
                predicted = int(share[key])
                actual = report.devices.get(kind, {}).get(device, 0)
                ok = _close(predicted, actual, tolerance if kind != "graph" else max(tolerance, 0.3))
                checks.append(Check(f"memory.{kind}.{device}", predicted, actual, ok))
    if report.total is not None:
        total = int(plan["memory"]["total"])
        checks.append(Check("memory.total", total, report.total, _close(total, report.total, tolerance)))
    if report.layers_offloaded is not None:
        layers = plan["layers"]
        predicted_layers = layers["on_gpu"] + (1 if layers["output_on_gpu"] else 0)
        checks.append(Check("layers.offloaded", predicted_layers, report.layers_offloaded,
                            predicted_layers == report.layers_offloaded))

    for check in checks:
        # Graph reserves depend on the GPU's kernels and the engine build (see planner/graph.py):
        # shown for comparison, never a reason to fail a deploy.
        if not check.ok and not check.figure.startswith("memory.graph"):
            warnings.append(f"{check.figure}: planned {_shown(check.figure, check.predicted)}, "
                            f"server reports {_shown(check.figure, check.actual)}")
    kv = report.memory.get("kv_cache", {})
    kv_planned = sum(int(v) for v in plan["memory"]["kv_cache"].values())
    if kv and kv_planned and sum(kv.values()) > kv_planned * (1 + tolerance) and kv_cache_type != "f16":
        warnings.append(
            f"the KV cache is {format_ollama(sum(kv.values()))}, larger than planned for {kv_cache_type} "
            f"({format_ollama(kv_planned)}): the quantized KV cache type is not in effect"
        )
    return Verification(checks=checks, warnings=warnings)


def expected_offload(plan: Optional["Plan"]) -> str:
    """The planned layer split as the server logs it ("N/M" of "offloaded N/M layers to GPU"), for
    the alias step's own check under verification.failOnMismatch; empty without a plan."""
    if plan is None:
        return ""
    layers = plan.to_dict()["layers"]
    return f"{layers['offloaded']}/{layers['offloaded_of']}"


def verify_deployment(settings: "Settings", plan: Optional[dict[str, Any]], report_text: str) -> Optional[Verification]:
    """The whole check for one stack: None while the verify script has not run (preview, offline)
    or when there is no plan to compare with."""
    if PS_MARK not in (report_text or "") or plan is None:
        return None
    report = parse_report(report_text, settings.model.alias)
    verification = compare(
        plan, report,
        num_ctx=settings.model.parameters.num_ctx, kv_cache_type=settings.server.env.kv_cache_type,
        tolerance=settings.verification.tolerance,
    )
    geometry = model_geometry(settings)
    if geometry is not None and report.model_info:
        verification.warnings += [
            f"the pulled {settings.model.base} differs from the geometry the plan used: {mismatch}"
            for mismatch in compare_with_model_info(geometry, report.model_info)
        ]
    return verification


def _shown(figure: str, value: Any) -> str:
    return format_ollama(int(value)) if figure.startswith("memory.") and value is not None else str(value)


def format_table(verification: Verification) -> str:
    lines = [f"{'figure':<22} {'planned':>12} {'actual':>12}  ok"]
    for check in verification.checks:
        verdict = "yes" if check.ok else ("differs (estimate)" if check.figure.startswith("memory.graph") else "NO")
        lines.append(f"{check.figure:<22} {_shown(check.figure, check.predicted):>12} "
                     f"{_shown(check.figure, check.actual):>12}  {verdict}")
    lines += [f"! {warning}" for warning in verification.warnings]
    return "\n".join(lines)
