"""Renders the project's .sh files into commands, with every parameter explicit.

Each script declares its inputs at the top as `: "${NAME:?}"` (required) or `: "${NAME?}"` (may be
empty). Rendering refuses a missing or surplus input, so a script never runs with an input it does
not expect.

A command carries the script to the host in a form no value can break out of: the script text
(ours, from the repository) travels base64-encoded and is decoded by the host, and each value is
one single-quoted `NAME=value` word handed to `env`. Inside single quotes a POSIX shell gives no
character a meaning but the closing quote, which shlex.quote escapes; so a value is never parsed
as code, whatever it holds, and `pulumi preview --diff` still shows a changed value as one
readable changed line.
"""

import base64
import re
import shlex
from pathlib import Path
from typing import Union

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
_DECLARATION = re.compile(r'^: "\$\{([A-Z][A-Z0-9_]*):?\?\}"', re.MULTILINE)

Value = Union[str, int, bool]


def declared_parameters(script: str) -> list[str]:
    return _DECLARATION.findall((SCRIPTS / script).read_text())


def render_script(script: str, params: dict[str, Value]) -> str:
    """The script text with its parameters bound as assignments after the shebang, for exec-form
    uses with no shell in between (a container health check); `script` is relative to scripts/."""
    text = _script_text(script, params)
    shebang, _, body = text.partition("\n")
    bound = "".join(f"{name}={_quoted(name, params[name])}\n" for name in declared_parameters(script))
    return f"{shebang}\n{bound}{body}"


def script_command(script: str, params: dict[str, Value], name: str, sudo: bool = False) -> str:
    """A one-shot command for `sh -c` (local) or the SSH user's login shell (remote) that runs
    `script` with bash, as root through `sudo -n` when asked. The script travels as an argument,
    not on stdin, so apt-get or curl inside it cannot swallow the rest of the script."""
    text = _script_text(script, params)
    encoded = base64.b64encode(text.encode()).decode()
    runner = "sudo -n env" if sudo else "env"
    assignments = [f"  {key}={_quoted(key, params[key])} \\" for key in declared_parameters(script)]
    run = f'  bash -c "$(printf %s {encoded} | base64 -d)" {shlex.quote(name)} </dev/null'
    return "\n".join([f"{runner} \\", *assignments, run])


def _script_text(script: str, params: dict[str, Value]) -> str:
    text = (SCRIPTS / script).read_text()
    declared = _DECLARATION.findall(text)
    if sorted(declared) != sorted(params):
        raise ValueError(f"{script} declares {sorted(declared)} but was given {sorted(params)}")
    return text


def _quoted(name: str, value: Value) -> str:
    text = ("1" if value else "0") if isinstance(value, bool) else str(value)
    # The one byte no argument or environment entry can hold: refuse it rather than truncate.
    if "\0" in text:
        raise ValueError(f"{name}: a NUL byte cannot be passed to a command")
    return shlex.quote(text)
