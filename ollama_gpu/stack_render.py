"""`make plan STACK=x`: everything the stack would create, rendered with no backend, CLI or host.

The program runs under the recording mocks (ollama_gpu.offline) with the config read straight
from Pulumi.<stack>.yaml, so the listing is what `pulumi up` would register, not a description of it.
Secure config values stay encrypted in the file and show as [secret].
"""

import argparse
import json
import os
import sys
from typing import Any

import pulumi
from pulumi.runtime import rpc

from ollama_gpu.config_loader import DEPLOY_AGENT_SOCKET, SECRET_PLACEHOLDER, stack_file, values_from_stack_file
from ollama_gpu.errors import ConfigError
from ollama_gpu.offline import ProgramRun, RecordedResource, SecretValue, run_program
from ollama_gpu.preflight import OFFLINE_ENV

RULE = "─" * 78

# The inputs worth reading for each resource type; the full inputs are in --json.
KEY_INPUTS = {
    "pulumi:providers:docker": ["host", "sshOpts"],
    "docker:index/remoteImage:RemoteImage": ["name", "keepLocally"],
    "docker:index/volume:Volume": ["name"],
    "docker:index/container:Container": ["name", "image", "networkMode", "ports", "volumes", "uploads", "gpus", "restart", "init", "labels", "wait", "waitTimeout"],
    "command:remote:Command": ["connection", "triggers"],
    "command:local:Command": ["triggers"],
}


def run_stack_file(stack: str) -> ProgramRun:
    """The program as `pulumi up -s STACK` would run it, from Pulumi.<stack>.yaml alone."""
    values = values_from_stack_file(stack_file(stack))
    os.environ[OFFLINE_ENV] = "1"
    os.environ.setdefault("SSH_AUTH_SOCK", DEPLOY_AGENT_SOCKET)
    return run_program(stack, values, secret_keys=secret_keys(values))


def secret_keys(values: dict[str, Any]) -> list[str]:
    """The keys the engine would mark secret: those whose value is, or holds, a secure value."""
    return [key for key, value in values.items() if _holds_secret(value)]


def _holds_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_holds_secret(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_secret(item) for item in value)
    return value == SECRET_PLACEHOLDER


def render_stack(stack: str) -> tuple[str, int]:
    try:
        run = run_stack_file(stack)
    except ConfigError as error:
        return str(error), 2
    except SystemExit as refused:
        # components.validation.Refused: the program's one message, nothing registered.
        return f"{RULE}\nConfig errors (nothing would be created)\n{RULE}\n{refused}", 2
    return _format_run(stack, run), 0


def _format_run(stack: str, run: ProgramRun) -> str:
    sections = [f"{RULE}\nStack '{stack}': {len(run.resources)} resources, in creation order\n{RULE}"]
    if run.warnings:
        sections.append("Warnings:\n" + "\n".join(f"  ! {w}" for w in run.warnings))
    plan_table = run.outputs.get("plan_table")
    if plan_table:
        sections.append(f"{RULE}\nPlan: where the model lands and how fast it can decode\n{RULE}\n{plan_table}")
    by_urn = {r.urn: r for r in run.resources}
    for resource in run.resources:
        sections.append(_format_resource(resource, by_urn))
    exports = {k: v for k, v in run.outputs.items() if k != "plan_table"}
    sections.append(f"{RULE}\nStack outputs\n{RULE}\n" + json.dumps(_show(exports), indent=2, sort_keys=True))
    return "\n\n".join(sections)


def _format_resource(resource: RecordedResource, by_urn: dict[str, RecordedResource]) -> str:
    parent = by_urn.get(resource.parent)
    after = [by_urn[u].name for u in resource.depends_on if u in by_urn]
    options = [name for name, on in (("delete-before-replace", resource.delete_before_replace),
                                     ("retain-on-delete", resource.retain_on_delete)) if on]
    lines = [f"● {resource.name}  ({resource.type})"]
    if parent:
        lines.append(f"    in: {parent.name}")
    if after:
        lines.append(f"    after: {', '.join(after)}")
    if options:
        lines.append(f"    options: {', '.join(options)}")
    for key in KEY_INPUTS.get(resource.type, []):
        if resource.inputs.get(key) not in (None, [], {}):
            lines.append(f"    {key}: {json.dumps(_show(resource.inputs[key]))}")
    if resource.type == "docker:index/container:Container" and resource.inputs.get("envs"):
        lines.append("    env:")
        lines += [f"      {entry}" for entry in resource.inputs["envs"]]
    if resource.type == "docker:index/container:Container" and resource.inputs.get("healthcheck"):
        check = resource.inputs["healthcheck"]
        lines.append(f"    healthcheck: every {check.get('interval')}, timeout {check.get('timeout')}, "
                     f"retries {check.get('retries')}; script:")
        lines += [f"      | {line}" for line in check.get("tests", ["", "", "", ""])[3].splitlines()]
    for script_key in ("create", "delete"):
        if resource.inputs.get(script_key):
            lines.append(f"    {script_key}:")
            lines += [f"      | {line}" for line in resource.inputs[script_key].splitlines()]
    return "\n".join(lines)


SECRET_FIELDS = {"privateKey", "privateKeyPassword", "password"}


def _show(value: Any) -> Any:
    """Secrets never reach the terminal. pulumi-command marks the whole SSH connection secret
    because it can hold a key; its non-secret fields (host, port, user, hostKey) are worth showing."""
    if isinstance(value, SecretValue):
        return "[secret]"
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        inner = value.get("value")
        return _show(inner) if isinstance(inner, dict) else "[secret]"
    if isinstance(value, dict):
        return {k: "[secret]" if k in SECRET_FIELDS and v else _show(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_show(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", help="stack name: reads Pulumi.<stack>.yaml")
    args = parser.parse_args(argv)
    text, code = render_stack(args.stack)
    print(text, file=sys.stdout if code == 0 else sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
