"""Turns a stack's raw config values into `Settings`, or into one message that says what to fix.

Used by the Pulumi program (values from the engine) and by `make plan` (values read straight from
Pulumi.<stack>.yaml, so no backend or CLI is needed). Nothing here imports Pulumi.
"""

import difflib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional, get_args

from pydantic import BaseModel, ValidationError

from ollama_gpu.errors import ConfigError
from ollama_gpu.profiles import PROFILE_DEFAULTS, deep_merge
from ollama_gpu.settings import HIDDEN, UNDECRYPTED_SECRET, Profile, Settings, SettingProblem
from ollama_gpu.ssh_keys import looks_like_private_key
from ollama_gpu.stack_yaml import load_stack_document

NAMESPACE = "ollama-gpu"
SECRET_PLACEHOLDER = UNDECRYPTED_SECRET
# Config keys that must be Pulumi secrets; a plain value is replaced by this marker before anything
# can print it, and refused.
SECRET_KEYS = ("sshPrivateKey",)
PLAINTEXT_SECRET = "[plain text: not shown]"
# A list inside a section whose every item must be a secret (set with `--secret --path`).
SECRET_LISTS = (("gateway", "apiKeys"),)
# A single value inside a section that must be a secret.
SECRET_FIELDS = (("router", "masterKey"),)
# Pulumi's own rule for stack names (they also name files and cache folders here).
_STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# A message shows at most this much of a value: enough to recognise it, never a pasted file.
_SHOWN_CHARACTERS = 120

# Offline tools (make plan, smoke, bench) never open SSH; they name the agent a deploy would use
# instead of demanding one, so they work on a machine with no keys at all.
DEPLOY_AGENT_SOCKET = "$SSH_AUTH_SOCK"
REPO = Path(__file__).resolve().parent.parent


class _HiddenSecret:
    """Shown in place of a secret's value, whatever went wrong with it."""

    def __repr__(self) -> str:
        return "[secret]"


HIDDEN_SECRET = _HiddenSecret()


def stack_file(stack: str) -> Path:
    if not _STACK_NAME.fullmatch(stack):
        raise ConfigError(f"stack {stack!r}: not a stack name. Fix: use letters, digits, _ . - (Pulumi's rule)")
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
    secret_problems = _secret_problems(stack, values)
    if secret_problems:
        raise ConfigError(_message(stack, secret_problems))
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
    if (settings.host is not None or settings.hosts) and settings.ssh_private_key is None and not agent_socket:
        raise ConfigError(_message(stack, [_line(
            "sshPrivateKey", None, "is missing and no ssh-agent is running (SSH_AUTH_SOCK)",
            f"ssh-add your key, or pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519 -s {stack}",
        )]))
    return settings


def values_from_engine_config(stack: str, config: dict[str, Any], secret_keys: Iterable[str] = ()) -> dict[str, Any]:
    """Keys of the `ollama-gpu:` namespace from the engine's flat map; objects arrive as JSON text.
    `secret_keys` are the full keys the engine marks secret."""
    secret = set(secret_keys)
    values = {}
    for full_key, raw in _project_keys(stack, config):
        key = full_key.partition(":")[2]
        if key in SECRET_KEYS:
            values[key] = raw if full_key in secret else PLAINTEXT_SECRET
        else:
            # The engine marks a whole object secret when any value inside it is.
            values[key] = _decode(raw) if full_key in secret else _plaintext_lists_marked(key, _decode(raw), lambda item: False)
    return values


def values_from_stack_file(path: Path) -> dict[str, Any]:
    """For offline use: secure values are not decrypted, only marked present."""
    stack = path.name[len("Pulumi."):-len(".yaml")]
    config = load_stack_document(path, stack).get("config")
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ConfigError(
            f"stack '{stack}': {path.name}: `config:` is a YAML {type(config).__name__}, not a mapping. "
            f"Fix: write one `ollama-gpu:KEY: value` per line under `config:`."
        )
    values = {}
    for full_key, raw in _project_keys(stack, config):
        key = full_key.partition(":")[2]
        if key in SECRET_KEYS and not (isinstance(raw, dict) and "secure" in raw):
            values[key] = PLAINTEXT_SECRET
        else:
            values[key] = _mask_secrets(stack, full_key, _plaintext_lists_marked(key, raw, _is_secure))
    return values


def _is_secure(raw: Any) -> bool:
    return isinstance(raw, dict) and "secure" in raw


def _plaintext_lists_marked(key: str, raw: Any, is_secret: Any) -> Any:
    """`raw` with each item of a SECRET_LISTS list that is not a secret replaced by the plain-text
    marker, before anything can print it."""
    for section, name in SECRET_LISTS:
        if key == section and isinstance(raw, dict) and isinstance(raw.get(name), list):
            raw = {**raw, name: [item if is_secret(item) else PLAINTEXT_SECRET for item in raw[name]]}
    for section, name in SECRET_FIELDS:
        if key == section and isinstance(raw, dict) and name in raw and not is_secret(raw[name]):
            raw = {**raw, name: PLAINTEXT_SECRET}
    return raw


def _project_keys(stack: str, config: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    """This project's keys. Keys of other namespaces belong to other programs and providers, but
    one that is ours misspelt, or has no namespace at all, would be silently ignored: refuse it."""
    for full_key, raw in config.items():
        namespace, colon, key = full_key.partition(":")
        if namespace == NAMESPACE and key:
            yield full_key, raw
            continue
        looks_like_ours = namespace.lower().replace("_", "-") == NAMESPACE or difflib.get_close_matches(namespace, [NAMESPACE], cutoff=0.8)
        if not colon or not namespace or not key or looks_like_ours:
            right = f"{NAMESPACE}:{key or namespace}" if colon else f"{NAMESPACE}:{full_key}"
            raise ConfigError(_message(stack, [
                f"{_shown_text(full_key)}: is not a key of this project (its keys start with `{NAMESPACE}:`). "
                f"Fix: rename it to {_shown_text(right)}."
            ]))


def _secure_value(stack: str, full_key: str, raw: dict[str, Any]) -> str:
    ciphertext = raw.get("secure")
    if set(raw) != {"secure"} or not isinstance(ciphertext, str) or not ciphertext.strip():
        raise ConfigError(_message(stack, [
            f"{full_key} = (secure value not shown): is not one `secure:` string as `pulumi config set --secret` writes it. "
            f"Fix: pulumi config set --secret {full_key.partition(':')[2]} VALUE -s {stack}"
        ]))
    return SECRET_PLACEHOLDER


def _decode(raw: Any) -> Any:
    if isinstance(raw, str) and raw[:1] in ("{", "["):
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            return raw
    return raw


def _mask_secrets(stack: str, full_key: str, raw: Any) -> Any:
    if isinstance(raw, dict):
        if "secure" in raw:
            return _secure_value(stack, full_key, raw)
        return {key: _mask_secrets(stack, full_key, value) for key, value in raw.items()}
    if isinstance(raw, list):
        return [_mask_secrets(stack, full_key, item) for item in raw]
    return raw


def plaintext_secrets_in_stack_file(stack: str) -> None:
    """The engine marks a whole object secret when any value in it is, so a key set without
    --secret beside a secret one reaches the program looking secret; the stack file, when the
    config comes from one, still tells them apart."""
    path = REPO / f"Pulumi.{stack}.yaml"
    if _STACK_NAME.fullmatch(stack) and path.exists():
        problems = _secret_list_problems(stack, values_from_stack_file(path))
        if problems:
            raise ConfigError(_message(stack, problems))


def _secret_list_problems(stack: str, values: dict[str, Any]) -> list[str]:
    problems = []
    for section, name in SECRET_LISTS:
        items = values.get(section, {}).get(name) if isinstance(values.get(section), dict) else None
        for index, item in enumerate(items if isinstance(items, list) else []):
            if item == PLAINTEXT_SECRET:
                path = f"{section}.{name}[{index}]"
                problems.append(_line(path, HIDDEN_SECRET, "is stored in plain text, so the key is in the stack file and its history",
                                      f"pulumi config set --secret --path '{path}' \"$(openssl rand -hex 32)\" -s {stack}, and revoke the old key"))
    for section, name in SECRET_FIELDS:
        if isinstance(values.get(section), dict) and values[section].get(name) == PLAINTEXT_SECRET:
            path = f"{section}.{name}"
            problems.append(_line(path, HIDDEN_SECRET, "is stored in plain text, so the key is in the stack file and its history",
                                  f"pulumi config set --secret --path '{path}' \"sk-$(openssl rand -hex 32)\" -s {stack}, and revoke the old key"))
    return problems


def _secret_problems(stack: str, values: dict[str, Any]) -> list[str]:
    problems = _secret_list_problems(stack, values)
    for key in SECRET_KEYS:
        if key not in values:
            continue
        value = values[key]
        set_it = f"pulumi config set --secret {key} < ~/.ssh/id_ed25519 -s {stack}"
        if value == PLAINTEXT_SECRET:
            problems.append(_line(key, HIDDEN_SECRET, "is stored in plain text, so the key is in the stack file and its history",
                                  f"pulumi config rm {key} -s {stack}; {set_it}; and replace that key on the VM: treat it as leaked"))
        elif value is None or not isinstance(value, str) or not value.strip():
            problems.append(_line(key, HIDDEN_SECRET, "is empty or not text", set_it))
        elif value != SECRET_PLACEHOLDER and not looks_like_private_key(value):
            problems.append(_line(key, HIDDEN_SECRET, "is not a private key (no PRIVATE KEY block)", set_it))
    return problems


def _message(stack: str, lines: list[str]) -> str:
    head = f"stack '{stack}': invalid configuration"
    return head + "".join(f"\n  {line}" for line in lines)


def _line(key: str, value: Any, problem: str, fix: str) -> str:
    shown = "(not set)" if value is None else _shown_text(value)
    end = "" if fix.endswith(("?", ".")) else "."
    return f"{NAMESPACE}:{key} = {shown}: {problem}. Fix: {fix}{end}"


def _shown_text(value: Any) -> str:
    """repr escapes newlines, control and bidi characters, so a value cannot forge message lines."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARACTERS else f"{text[:_SHOWN_CHARACTERS]}… ({len(text)} characters)"


def _describe(stack: str, error: dict[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    cause = (error.get("ctx") or {}).get("error")
    secret = bool(loc) and loc[0] in SECRET_KEYS
    if isinstance(cause, SettingProblem):
        key = _join(loc + ([cause.key] if cause.key else []))
        # A rule about the field itself: show what the user wrote ('64GiB'), not the parsed value.
        value = cause.value if cause.key or cause.value is HIDDEN else error["input"]
        return _line(key, HIDDEN_SECRET if secret else value, cause.problem, cause.fix)
    key = _join(loc)
    value = HIDDEN_SECRET if secret else error["input"]
    if error["type"] == "extra_forbidden":
        if len(loc) == 1 and re.match(r"[A-Za-z]+[.\[]", loc[0]) and re.split(r"[.\[]", loc[0])[0] in _known_keys([]):
            # `pulumi config set host.address x` without --path stores a flat key named "host.address".
            return _line(key, value, "is a flat key, not a path into its section",
                         f"pulumi config rm '{loc[0]}' -s {stack}; pulumi config set --path '{loc[0]}' VALUE -s {stack}")
        known = _known_keys(loc[:-1])
        guess = difflib.get_close_matches(loc[-1], known, n=1)
        fix = f"did you mean '{guess[0]}'?" if guess else "remove it; known keys here: " + ", ".join(known)
        return _line(key, value, "is not a known key", fix)
    if error["type"] == "missing":
        return _line(key, None, "is required", f"pulumi config set --path '{key}' VALUE -s {stack}")
    problem = error["msg"][0].lower() + error["msg"][1:]
    return _line(key, value, problem, f"pulumi config set --path '{key}' VALUE -s {stack} with such a value")


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
