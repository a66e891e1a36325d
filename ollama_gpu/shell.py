"""Renders the project's .sh files into commands, with every parameter explicit.

Each script declares its inputs at the top as `: "${NAME:?}"` (required) or `: "${NAME?}"` (may be
empty). Rendering prepends one shell-quoted assignment per input and refuses a missing or surplus
one, so a script never runs with an input it does not expect, and `pulumi preview --diff` shows a
changed value as one changed line.

The rendered text is what the host runs and what Pulumi compares between runs, so it keeps only
what executes: a `source "${BASH_SOURCE%/*}/lib/X.sh"` line is replaced by that file (shellcheck
follows the same line in the source tree), and full-line comments and blank lines are dropped, so
editing a comment never re-runs a step on the host. Comment-like lines inside heredocs are dropped
too: scripts keep such data out of heredocs.
"""

import re
import shlex
from pathlib import Path
from typing import Union

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
_DECLARATION = re.compile(r'^: "\$\{([A-Z][A-Z0-9_]*):?\?\}"', re.MULTILINE)
_END = "OLLAMA_GPU_SCRIPT_END"
_LIBRARY = re.compile(r'^source "\$\{BASH_SOURCE%/\*\}/(lib/[a-z0-9-]+\.sh)"$')

Value = Union[str, int, bool]


def declared_parameters(script: str) -> list[str]:
    return _DECLARATION.findall((SCRIPTS / script).read_text())


def render_script(script: str, params: dict[str, Value]) -> str:
    """The script text with its parameters bound; `script` is relative to scripts/."""
    path = SCRIPTS / script
    text = path.read_text()
    declared = _DECLARATION.findall(text)
    if sorted(declared) != sorted(params):
        raise ValueError(f"{script} declares {sorted(declared)} but was given {sorted(params)}")
    shebang, _, body = text.partition("\n")
    bound = "".join(f"{name}={shlex.quote(_shell_value(params[name]))}\n" for name in declared)
    return f"{shebang}\n{bound}{_executable_lines(body, path.parent)}"


def _executable_lines(body: str, directory: Path) -> str:
    lines = []
    for line in body.splitlines():
        library = _LIBRARY.match(line)
        if library:
            lines.append(_executable_lines((directory / library.group(1)).read_text(), directory).rstrip("\n"))
        elif line.strip() and not line.lstrip().startswith("#"):
            lines.append(line)
    return "\n".join(lines) + "\n"


def as_command(script_text: str, name: str, sudo: bool = False) -> str:
    """A one-shot command for `sh -c` (local) or an SSH session (remote) that runs the rendered
    script with bash. The script travels as an argument, not on stdin, so apt-get or curl inside
    it cannot swallow the rest of the script."""
    if any(line == _END for line in script_text.splitlines()):
        raise ValueError(f"{name}: script contains the heredoc terminator")
    runner = "sudo -n bash" if sudo else "bash"
    return f"{runner} -c \"$(cat <<'{_END}'\n{script_text}\n{_END}\n)\" {shlex.quote(name)} </dev/null"


def _shell_value(value: Value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
