"""Runs the Pulumi program against an in-process engine stand-in, with no backend, CLI or host.

`make plan`, the unit tests and the integration tests all go through `run_program`, so what they
inspect is exactly what `__main__.py` registers: resource inputs and the options that decide
replacement and deletion (which Pulumi's own mocks do not expose), plus the stack outputs.
"""

import json
import runpy
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings as runtime_settings
from pulumi.runtime.sync_await import _sync_await

from ollama_gpu.config_loader import NAMESPACE

PROGRAM = Path(__file__).resolve().parent.parent / "__main__.py"
PROJECT = "ollama-gpu"


@dataclass
class RecordedResource:
    type: str
    name: str
    urn: str
    parent: str
    inputs: dict[str, Any]
    depends_on: list[str]
    delete_before_replace: bool
    retain_on_delete: bool
    protect: bool
    custom_timeouts: dict[str, str]
    # Earlier identities the engine matches in the state: {"name", "parent"} (URN) or {"urn"}.
    aliases: list[dict[str, str]] = field(default_factory=list)


@dataclass
class ProgramRun:
    resources: list[RecordedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def by_name(self, name: str) -> RecordedResource:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}: {[r.name for r in self.resources]}")
        return matches[0]

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def names(self) -> list[str]:
        return [r.name for r in self.resources]


class _EchoMocks(pulumi.runtime.Mocks):
    """Providers are absent: each resource 'creates' by echoing its inputs, plus the few
    provider-computed outputs the program reads."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        if args.typ == "docker:index/remoteImage:RemoteImage":
            outputs["imageId"] = f"sha256:offline-{args.inputs['name']}"
        if args.typ.startswith("command:") and "stdout" not in outputs:
            outputs["stdout"] = ""
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, run: ProgramRun):
        super().__init__(mocks)
        self.run = run

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            timeouts = request.customTimeouts
            self.run.resources.append(
                RecordedResource(
                    type=request.type,
                    name=request.name,
                    urn=response.urn,
                    parent=request.parent,
                    inputs=rpc.deserialize_properties(request.object),
                    depends_on=list(request.dependencies),
                    delete_before_replace=request.deleteBeforeReplace,
                    retain_on_delete=request.retainOnDelete,
                    protect=request.protect,
                    custom_timeouts={k: v for k, v in (("create", timeouts.create), ("update", timeouts.update), ("delete", timeouts.delete)) if v},
                    aliases=[_alias(alias) for alias in request.aliases],
                )
            )
        return response


def _alias(alias: Any) -> dict[str, str]:
    if alias.HasField("spec"):
        return {"name": alias.spec.name, "parent": alias.spec.parentUrn}
    return {"urn": alias.urn}


class _WarningLog(pulumi.runtime.mocks.MockEngine):
    def __init__(self, run: ProgramRun):
        super().__init__(None)
        self.run = run

    def Log(self, request):
        # Collected, not printed: the caller decides how to show them (make plan lists them once).
        if request.severity in (2, 3):  # engine.proto: WARNING = 2, ERROR = 3
            self.run.warnings.append(request.message)


def _resolve_exports() -> dict[str, Any]:
    """Mocks finish the stack before the program exports anything, so exports are read back from
    the stack object; secret ones stay wrapped so tests can tell them apart."""
    exports = {}
    for name, value in runtime_settings.get_root_resource().outputs.items():
        output = pulumi.Output.from_input(value)
        resolved = _sync_await(output.future())
        exports[name] = SecretValue(resolved) if _sync_await(output.is_secret()) else resolved
    return exports


@dataclass(frozen=True)
class SecretValue:
    value: Any


def run_program(stack: str, config: dict[str, Any], secret_keys: Optional[list[str]] = None) -> ProgramRun:
    """`config` maps namespace keys (without `ollama-gpu:`) to values; objects are JSON-encoded
    as the engine would pass them. Raises whatever the program raises (UserError for bad config)."""
    run = ProgramRun()
    runtime_settings.reset_options(project=PROJECT, stack=stack, preview=False)
    monitor = _RecordingMonitor(_EchoMocks(), run)
    pulumi.runtime.set_mocks(_EchoMocks(), project=PROJECT, stack=stack, preview=False, monitor=monitor)
    runtime_settings.SETTINGS.engine = _WarningLog(run)
    full = {f"{NAMESPACE}:{key}": value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}
    pulumi.runtime.set_all_config(full, [f"{NAMESPACE}:{k}" for k in secret_keys or []])

    runtime_settings.SETTINGS.rpc_manager.clear()
    runtime_settings.SETTINGS.outputs.clear()
    # The program takes over SIGINT for the engine's stop; the process running it here keeps its own.
    sigint = signal.getsignal(signal.SIGINT)
    try:
        _sync_await(pulumi.runtime.stack.run_pulumi_func(lambda: runpy.run_path(str(PROGRAM), run_name="__main__")))
        run.outputs = _resolve_exports()
    finally:
        signal.signal(signal.SIGINT, sigint)
        pulumi.runtime.set_all_config({})
    return run
