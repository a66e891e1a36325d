"""Turns a stack's raw config values into `Settings`, or into one message that says what to fix.

Used by the Pulumi program (values from the engine) and by `make plan` (values read straight from
Pulumi.<stack>.yaml, so no backend or CLI is needed). Nothing here imports Pulumi.
"""

import difflib
import json
from pathlib import Path
from typing import Any, Optional, get_args

import yaml
from pydantic import BaseModel, ValidationError

from ollama_gpu.errors import ConfigError
from ollama_gpu.profiles import PROFILE_DEFAULTS, deep_merge
from ollama_gpu.settings import Profile, Settings, SettingProblem

NAMESPACE = "ollama-gpu"
SECRET_PLACEHOLDER = "[secret]"
# Offline tools (make plan, smoke, bench) never open SSH; they name the agent a deploy would use
# instead of demanding one, so they work on a machine with no keys at all.
DEPLOY_AGENT_SOCKET = "$SSH_AUTH_SOCK"
REPO = Path(__file__).resolve().parent.parent


def stack_file(stack: str) -> Path:
    path = REPO / f"Pulumi.{stack}.yaml"
    if not path.exists():
        stacks = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in REPO.glob("Pulumi.*.yaml"))
        raise ConfigError(f"stack '{stack}': no {path.name}. Fix: use one of {', '.join(stacks)}")
    return path


def load_settings(stack: str, values: dict[str, Any], agent_socket: Optional[str] = None) -> Settings:
    """`values` holds the namespace's top-level keys (without `ollama-gpu:`), objects decoded.
    `agent_socket` is the caller's $SSH_AUTH_SOCK: the SSH identity when the stack has no key secret.
    It is only checked for, never kept: the providers find the agent through their own environment,
    as plain `ssh` does, so no machine-local path reaches the stack's state."""
    profile = values.get("profile")
    if profile not in get_args(Profile):
        raise ConfigError(
            _message(stack, [_line("profile", profile, "must be one of a10, v100, none",
                                   f"pulumi config set profile a10 -s {stack}")])
        )
    if "stack" in values:
        raise ConfigError(_message(stack, [_line("stack", values["stack"], "is not a config key (the stack name comes from `-s`)", "pulumi config rm stack")]))
    merged = deep_merge(PROFILE_DEFAULTS[profile], values)
    try:
        settings = Settings.model_validate({**merged, "stack": stack})
    except ValidationError as error:
        raise ConfigError(_message(stack, [_describe(stack, e) for e in error.errors()])) from None
    if settings.host is not None and settings.ssh_private_key is None and not agent_socket:
        raise ConfigError(_message(stack, [_line(
            "sshPrivateKey", None, "is missing and no ssh-agent is running (SSH_AUTH_SOCK)",
            f"ssh-add your key, or pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519 -s {stack}",
        )]))
    return settings


def values_from_engine_config(config: dict[str, Any]) -> dict[str, Any]:
    """Keys of the `ollama-gpu:` namespace from the engine's flat map; objects arrive as JSON text."""
    values = {}
    for full_key, raw in config.items():
        namespace, _, key = full_key.partition(":")
        if namespace == NAMESPACE:
            values[key] = _decode(raw)
    return values


def values_from_stack_file(path: Path) -> dict[str, Any]:
    """For offline use: secure values are not decrypted, only marked present."""
    document = yaml.safe_load(path.read_text()) or {}
    values = {}
    for full_key, raw in (document.get("config") or {}).items():
        namespace, _, key = full_key.partition(":")
        if namespace == NAMESPACE:
            values[key] = _mask_secrets(raw)
    return values


def _decode(raw: Any) -> Any:
    if isinstance(raw, str) and raw[:1] in ("{", "["):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _mask_secrets(raw: Any) -> Any:
    if isinstance(raw, dict):
        if set(raw) == {"secure"}:
            return SECRET_PLACEHOLDER
        return {key: _mask_secrets(value) for key, value in raw.items()}
    if isinstance(raw, list):
        return [_mask_secrets(item) for item in raw]
    return raw


def _message(stack: str, lines: list[str]) -> str:
    head = f"stack '{stack}': invalid configuration"
    return head + "".join(f"\n  {line}" for line in lines)


def _line(key: str, value: Any, problem: str, fix: str) -> str:
    shown = "(not set)" if value is None else repr(value)
    end = "" if fix.endswith(("?", ".")) else "."
    return f"{NAMESPACE}:{key} = {shown}: {problem}. Fix: {fix}{end}"


def _describe(stack: str, error: dict[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, SettingProblem):
        key = _join(loc + ([cause.key] if cause.key else []))
        # A rule about the field itself: show what the user wrote ('64GiB'), not the parsed value.
        value = cause.value if cause.key else error["input"]
        return _line(key, value, cause.problem, cause.fix)
    key = _join(loc)
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        guess = difflib.get_close_matches(loc[-1], known, n=1)
        fix = f"did you mean '{guess[0]}'?" if guess else "remove it; known keys here: " + ", ".join(known)
        return _line(key, error["input"], "is not a known key", fix)
    if error["type"] == "missing":
        return _line(key, None, "is required", f"pulumi config set --path '{key}' VALUE -s {stack}")
    problem = error["msg"][0].lower() + error["msg"][1:]
    return _line(key, error["input"], problem, f"pulumi config set --path '{key}' VALUE -s {stack} with such a value")


def _join(loc: list[str]) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if part.isdigit() else (f".{part}" if key else part)
    return key


def _known_keys(loc: list[str]) -> list[str]:
    """The aliases valid at a location, for 'did you mean' hints on typos."""
    model: Optional[type[BaseModel]] = Settings
    for part in loc:
        field = next((f for f in model.model_fields.values() if f.alias == part), None) if model else None
        annotation = field.annotation if field else None
        model = next(
            (t for t in (annotation, *get_args(annotation)) if isinstance(t, type) and issubclass(t, BaseModel)),
            None,
        )
    if model is None:
        return []
    return sorted(f.alias for name, f in model.model_fields.items() if name != "stack")
