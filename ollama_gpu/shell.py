"""Renders the project's .sh files into commands, with every parameter explicit.

Each script declares its inputs at the top as `: "${NAME:?}"` (required) or `: "${NAME?}"` (may be
empty). Rendering refuses a missing or surplus input, so a script never runs with an input it does
not expect.

The script text is what the host runs and what Pulumi compares between runs, so it keeps only what
executes: a `source "${BASH_SOURCE%/*}/lib/X.sh"` line is replaced by that file (shellcheck follows
the same line in the source tree), and full-line comments and blank lines are dropped, so editing
a comment never re-runs a step on the host. Comment-like lines inside heredocs are dropped too:
scripts keep such data out of heredocs.

A command carries the script to the host in a form no value can break out of. Each value is one
single-quoted `NAME=value` word handed to `env`: inside single quotes a POSIX shell gives no
character a meaning but the closing quote, which shlex.quote escapes, so a value is never parsed as
code, whatever it holds, and `pulumi preview --diff` shows a changed value as one changed line.
The script itself (ours, from the repository) travels on the command's stdin, read whole before it
runs (so apt-get or curl inside cannot swallow the rest of it): the command line stays a few lines,
which is what pulumi-command repeats when a step fails. stdin is one per resource, so a delete
script travels base64-encoded in its command line instead.
"""

import base64
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Union

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
_DECLARATION = re.compile(r'^: "\$\{([A-Z][A-Z0-9_]*):?\?\}"', re.MULTILINE)
_LIBRARY = re.compile(r'^source "\$\{BASH_SOURCE%/\*\}/(lib/[a-z0-9-]+\.sh)"$')
# Reads the whole script from stdin, then runs it with stdin closed; "$0" is the step's name. No
# script at all is a failure: pulumi-command attaches stdin only when it is non-empty.
_RUN_STDIN = ("""bash -c 'script=$(cat); [ -n "$script" ] || { echo "ollama-gpu: $0: no script on stdin" >&2; exit 1; }; """
              """exec bash -c "$script" "$0" </dev/null'""")

Value = Union[str, int, bool]


@dataclass(frozen=True)
class Command:
    """What a pulumi-command resource runs: `line` for its create (or delete), `stdin` fed to it."""

    line: str
    stdin: str


def declared_parameters(script: str) -> list[str]:
    return _DECLARATION.findall((SCRIPTS / script).read_text())


def render_script(script: str, params: dict[str, Value]) -> str:
    """The script text with its parameters bound as assignments after the shebang, for exec-form
    uses with no shell in between (a container entrypoint or health check); `script` is relative
    to scripts/."""
    text = _script_text(script, params)
    shebang, _, body = text.partition("\n")
    bound = "".join(f"{name}={_quoted(name, params[name])}\n" for name in declared_parameters(script))
    return f"{shebang}\n{bound}{body}"


def script_command(script: str, params: dict[str, Value], name: str, sudo: bool = False) -> Command:
    """A one-shot command for `sh -c` (local) or the SSH user's login shell (remote) that runs
    `script` with bash, as root through `sudo -n` when asked; the script comes on stdin."""
    return Command(_with_values(script, params, f"{_RUN_STDIN} {shlex.quote(name)}", sudo), _script_text(script, params))


def inline_script_command(script: str, params: dict[str, Value], name: str, sudo: bool = False) -> str:
    """The same, with the script base64-encoded in the command line: for a delete, whose resource's
    stdin already carries the create script."""
    encoded = base64.b64encode(_script_text(script, params).encode()).decode()
    run = f'bash -c "$(printf %s {encoded} | base64 -d)" {shlex.quote(name)} </dev/null'
    return _with_values(script, params, run, sudo)


def _with_values(script: str, params: dict[str, Value], run: str, sudo: bool) -> str:
    runner = "sudo -n env" if sudo else "env"
    assignments = [f"  {key}={_quoted(key, params[key])} \\" for key in declared_parameters(script)]
    return "\n".join([f"{runner} \\", *assignments, f"  {run}"])


def _script_text(script: str, params: dict[str, Value]) -> str:
    path = SCRIPTS / script
    text = path.read_text()
    declared = _DECLARATION.findall(text)
    if sorted(declared) != sorted(params):
        raise ValueError(f"{script} declares {sorted(declared)} but was given {sorted(params)}")
    shebang, _, body = text.partition("\n")
    return f"{shebang}\n{_executable_lines(body, path.parent)}"


def _executable_lines(body: str, directory: Path) -> str:
    lines = []
    for line in body.splitlines():
        library = _LIBRARY.match(line)
        if library:
            lines.append(_executable_lines((directory / library.group(1)).read_text(), directory).rstrip("\n"))
        elif line.strip() and not line.lstrip().startswith("#"):
            lines.append(line)
    return "\n".join(lines) + "\n"


def _quoted(name: str, value: Value) -> str:
    text = ("1" if value else "0") if isinstance(value, bool) else str(value)
    # The one byte no argument or environment entry can hold: refuse it rather than truncate.
    if "\0" in text:
        raise ValueError(f"{name}: a NUL byte cannot be passed to a command")
    return shlex.quote(text)
