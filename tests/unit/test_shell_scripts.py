"""The project's shell scripts: shellcheck-clean, rendered with exactly their declared parameters,
and delivered byte for byte by what pulumi-command hands to `sh -c` (local) or to the SSH user's
shell (remote), with or without `sudo -n`: a create as a short command line with the script on its
stdin, a delete as a command line that carries its script itself, whatever stdin it is given."""

import base64
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from ollama_gpu import shell
from ollama_gpu.shell import declared_parameters, inline_script_command, render_script, script_command
from tests.unit.conftest import REPO, script_parameters

SCRIPTS = REPO / "scripts"


def _is_shell_script(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    with path.open("rb") as handle:
        first_line = handle.readline(200)
    return first_line.startswith(b"#!") and first_line.rstrip().split(b"/")[-1].split()[-1] in (b"sh", b"bash")


SHELL_SCRIPTS = sorted([REPO / ".ci" / "run", *(p for p in SCRIPTS.rglob("*") if p.is_file() and _is_shell_script(p))])
# Scripts the program renders into commands and health checks (scripts/dev is for test machines).
RENDERED_SCRIPTS = sorted(p.relative_to(SCRIPTS).as_posix() for d in ("host", "container") for p in (SCRIPTS / d).glob("*.sh"))


def _required_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI: apt-get install -y {name}")
        pytest.skip(f"{name} is not installed (apt-get install -y {name})")
    return path


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_script_passes_shellcheck(script):
    # -x: check sourced helpers (scripts/dev/harness-common.sh) with the scripts that use them.
    result = subprocess.run([_required_tool("shellcheck"), "-x", str(script)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_program_scripts_are_found():
    assert {"host/model-alias.sh", "host/gpu-check.sh", "container/healthcheck.sh"} <= set(RENDERED_SCRIPTS)
    assert set(SCRIPTS / s for s in RENDERED_SCRIPTS) <= set(SHELL_SCRIPTS)


# --- render_script: exactly the declared parameters ---------------------------------------------

PROBE = """#!/usr/bin/env bash
# Writes its parameters, its name, its own text and any stdin into OUT_DIR, byte for byte.
set -euo pipefail
: "${OUT_DIR:?}"
: "${TRICKY:?}"
: "${EMPTY?}"
printf '%s' "$TRICKY" >"$OUT_DIR/tricky"
printf '%s' "$EMPTY" >"$OUT_DIR/empty"
printf '%s' "$0" >"$OUT_DIR/name"
printf '%s' "$BASH_EXECUTION_STRING" >"$OUT_DIR/script"
if IFS= read -r line; then
  printf '%s' "$line" >"$OUT_DIR/stdin"
fi
"""

TRICKY = "it's \"quoted\" $HOME `id` $(id) \\ back\\slash;\n  second line\twith tab ; rm -rf / # ≈ ünï\n"


@pytest.fixture
def probe_dir(tmp_path, monkeypatch) -> Path:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "probe.sh").write_text(PROBE)
    monkeypatch.setattr(shell, "SCRIPTS", scripts)
    return scripts


def test_declared_parameters_are_read_in_order(probe_dir):
    assert declared_parameters("probe.sh") == ["OUT_DIR", "TRICKY", "EMPTY"]


@pytest.mark.parametrize(
    "params, named",
    [
        pytest.param({"OUT_DIR": "/tmp", "TRICKY": "x"}, "EMPTY", id="missing"),
        pytest.param({"OUT_DIR": "/tmp", "TRICKY": "x", "EMPTY": "", "SURPLUS": "1"}, "SURPLUS", id="surplus"),
        pytest.param({"OUT_DIR": "/tmp", "TRICKY": "x", "EMTPY": ""}, "EMTPY", id="misspelt"),
    ],
)
def test_render_refuses_missing_and_surplus_parameters(probe_dir, params, named):
    with pytest.raises(ValueError, match=named) as refused:
        render_script("probe.sh", params)
    assert "probe.sh" in str(refused.value)


def test_render_binds_each_parameter_once_right_after_the_shebang(probe_dir):
    text = render_script("probe.sh", {"OUT_DIR": "/o", "TRICKY": "a b", "EMPTY": True})
    assert text.splitlines()[:4] == ["#!/usr/bin/env bash", "OUT_DIR=/o", "TRICKY='a b'", "EMPTY=1"]
    # The body follows as written, less its comment line.
    assert text.splitlines()[4:] == [line for line in PROBE.splitlines()[1:] if not line.startswith("#")]


# --- What the host runs, and what Pulumi compares between runs: only executable lines -----------

COMMENTED_PROBE = PROBE.replace("set -euo pipefail\n", """set -euo pipefail

# A comment that explains why, edited later.
    # An indented comment.

""").replace("fi\n", "fi\n# A trailing comment.\n\n")
PROBE_PARAMS = {"OUT_DIR": "/o", "TRICKY": "x", "EMPTY": ""}


def test_a_comment_only_edit_leaves_the_rendered_text_unchanged(probe_dir):
    """Pulumi updates a command whose text changed: a reworded comment must not re-run a host step."""
    before = render_script("probe.sh", PROBE_PARAMS)
    assert COMMENTED_PROBE != PROBE
    (probe_dir / "probe.sh").write_text(COMMENTED_PROBE)
    assert render_script("probe.sh", PROBE_PARAMS) == before
    # A change to what runs still shows.
    (probe_dir / "probe.sh").write_text(COMMENTED_PROBE.replace("'%s' \"$EMPTY\"", "'<%s>' \"$EMPTY\""))
    assert render_script("probe.sh", PROBE_PARAMS) != before


@pytest.mark.parametrize("script", RENDERED_SCRIPTS)
def test_rendered_scripts_hold_no_comment_or_source_line(script):
    """The host has only the rendered text: a `source` line would name a file that is not there."""
    text = render_script(script, {name: "x" for name in declared_parameters(script)})
    shebang, *lines = text.splitlines()
    assert shebang.startswith("#!")
    for line in lines:
        assert not line.lstrip().startswith("#"), f"{script}: {line}"
        assert not line.lstrip().startswith(("source ", ". ")), f"{script}: {line}"


def _executable(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("script", [s for s in RENDERED_SCRIPTS if "lib/api.sh" in (SCRIPTS / s).read_text()])
def test_scripts_that_call_the_api_carry_lib_api_inline(script):
    text = render_script(script, {name: "x" for name in declared_parameters(script)})
    library = _executable((SCRIPTS / "host" / "lib" / "api.sh").read_text())
    lines = text.splitlines()
    start = lines.index(library[0])
    assert lines[start:start + len(library)] == library
    assert start < next(i for i, line in enumerate(lines) if "api_call " in line and "()" not in line)


def test_the_model_steps_use_lib_api():
    assert {"host/model-pull.sh", "host/model-alias.sh"} <= {
        s for s in RENDERED_SCRIPTS if "lib/api.sh" in (SCRIPTS / s).read_text()
    }


def test_an_inlined_library_runs_where_no_library_file_exists(probe_dir, tmp_path):
    (probe_dir / "lib").mkdir()
    (probe_dir / "lib" / "greet.sh").write_text("# shellcheck shell=bash\n# Says hello.\ngreet() {\n  printf 'hello %s' \"$1\"\n}\n")
    (probe_dir / "greeter.sh").write_text(
        '#!/usr/bin/env bash\nset -euo pipefail\n: "${WHO:?}"\n# shellcheck source=lib/greet.sh\n'
        'source "${BASH_SOURCE%/*}/lib/greet.sh"\ngreet "$WHO"\n'
    )
    command = script_command("greeter.sh", {"WHO": "world"}, "greeter")
    assert "Says hello" not in command.stdin
    result = subprocess.run(["/bin/sh", "-c", command.line], input=command.stdin, capture_output=True, text=True, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "hello world"), result.stderr


def _heredoc_bodies(text: str) -> list[list[str]]:
    bodies, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        opened = re.search(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1(?:\s|;|$)", line)
        if opened:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == opened.group(2))
            bodies.append(lines[i + 1:end])
    return bodies


@pytest.mark.parametrize("script", RENDERED_SCRIPTS)
def test_heredocs_survive_rendering_line_for_line(script):
    """Rendering drops comment and blank lines everywhere, heredocs included: a heredoc in a host
    script must hold neither, or the host runs something other than what was written."""
    text = render_script(script, {name: "x" for name in declared_parameters(script)})
    for body in _heredoc_bodies((SCRIPTS / script).read_text()):
        joined = "\n".join(body)
        assert f"\n{joined}\n" in text, f"{script}: a heredoc changed in rendering:\n{joined}"


# --- script_command: the script and every value arrive intact under every shell that may run it --


@pytest.fixture
def fake_sudo(tmp_path) -> Path:
    """`sudo -n CMD...` that runs CMD as the caller: proves the argument form survives sudo."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sudo = bin_dir / "sudo"
    sudo.write_text('#!/bin/sh\n[ "$1" = -n ] || { echo "sudo without -n would prompt" >&2; exit 99; }\nshift\nexec "$@"\n')
    sudo.chmod(0o755)
    return bin_dir


LOGIN_SHELLS = ["/bin/sh", "dash", "bash"]
# A create command runs with its script on stdin; pulumi-command feeds that same stdin (the create
# script) to the resource's delete, which carries its own script in its command line.
TRANSPORTS = ["create", "delete"]
# What a delete finds on its stdin: a script that must not run (it would leave `ran-create`).
CREATE_STDIN = "#!/usr/bin/env bash\ntouch ran-create\n"


def _probe_invocation(transport, params, sudo) -> tuple[str, str]:
    """The command line and the stdin pulumi-command would hand the shell for the probe."""
    if transport == "create":
        command = script_command("probe.sh", params, "probe-step", sudo=sudo)
        return command.line, command.stdin
    return inline_script_command("probe.sh", params, "probe-step", sudo=sudo), CREATE_STDIN


def _run_probe(tmp_path, fake_sudo, login_shell, sudo, tricky, transport="create") -> tuple[subprocess.CompletedProcess, Path]:
    shell_path = login_shell if login_shell.startswith("/") else _required_tool(login_shell)
    out = tmp_path / "out"
    out.mkdir()
    line, stdin = _probe_invocation(transport, {"OUT_DIR": str(out), "TRICKY": tricky, "EMPTY": ""}, sudo)
    env = {**os.environ, "PATH": f"{fake_sudo}:{os.environ['PATH']}"}
    result = subprocess.run([shell_path, "-c", line], input=stdin, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert not (tmp_path / "ran-create").exists(), "a delete ran the create script it found on stdin"
    return result, out


def _probe_as_run() -> str:
    """The probe as the host receives it: its executable lines (the comment is dropped)."""
    return "".join(line + "\n" for line in PROBE.splitlines() if not line.startswith("# "))


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("login_shell", LOGIN_SHELLS)
@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "sudo"])
def test_command_delivers_the_script_intact(probe_dir, tmp_path, fake_sudo, login_shell, sudo, transport):
    result, out = _run_probe(tmp_path, fake_sudo, login_shell, sudo, TRICKY, transport)

    assert result.returncode == 0, result.stderr
    assert (out / "tricky").read_text() == TRICKY
    assert (out / "empty").read_text() == ""
    assert (out / "name").read_text() == "probe-step"
    assert (out / "script").read_text() == _probe_as_run().rstrip("\n")
    # The script runs with stdin closed: a tool in it that reads stdin (apt-get, curl, read) gets
    # nothing, neither the rest of a create script nor the create script a delete is handed.
    assert not (out / "stdin").exists()


def test_the_create_stdin_is_the_script_and_the_line_holds_only_values(probe_dir):
    params = {"OUT_DIR": "/o", "TRICKY": TRICKY, "EMPTY": ""}
    command = script_command("probe.sh", params, "probe-step")
    assert command.stdin == _probe_as_run()
    # `env \`, one line per parameter (TRICKY's own newlines stay inside its quotes), the runner.
    assert len(command.line.splitlines()) - TRICKY.count("\n") == len(params) + 2
    assert not set(command.line.splitlines()) & set(_probe_as_run().splitlines())


def test_a_delete_carries_its_script_in_its_line_whatever_its_stdin(probe_dir):
    params = {"OUT_DIR": "/o", "TRICKY": "x", "EMPTY": ""}
    line = inline_script_command("probe.sh", params, "probe-step")
    assert len(line.splitlines()) == len(params) + 2
    assert script_parameters(line) == params
    encoded = base64.b64encode(_probe_as_run().encode()).decode()
    assert encoded in line and line.rstrip().endswith("probe-step </dev/null")


# Each would run `touch pwned` in the working directory if it escaped its quoting. The first is the
# injection that escaped the old heredoc transport: a line starting with its terminator and `)`.
BREAKOUTS = [
    'x\nOLLAMA_GPU_SCRIPT_END)" ; touch pwned ; : "',
    "x\nOLLAMA_GPU_SCRIPT_END\ntouch pwned\n",
    "'; touch pwned; '",
    "'\"'\"'; touch pwned #",
    "$(touch pwned)",
    "`touch pwned`",
    '"; touch pwned; "',
    "\\'; touch pwned; echo \\",
    "x\r\ntouch pwned\r\n",
    ") ; touch pwned ; (",
    "\\\ntouch pwned",
    "${IFS}$(touch${IFS}pwned)",
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("login_shell", LOGIN_SHELLS)
@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "sudo"])
@pytest.mark.parametrize("payload", BREAKOUTS)
def test_no_value_breaks_out_of_the_command(probe_dir, tmp_path, fake_sudo, login_shell, sudo, payload, transport):
    result, out = _run_probe(tmp_path, fake_sudo, login_shell, sudo, payload, transport)

    assert not (tmp_path / "pwned").exists(), f"the value ran as code:\n{result.stderr}"
    assert result.returncode == 0, result.stderr
    assert (out / "tricky").read_bytes().decode() == payload


@pytest.mark.parametrize("render", [script_command, inline_script_command], ids=TRANSPORTS)
def test_a_nul_byte_is_refused_not_truncated(probe_dir, render):
    with pytest.raises(ValueError, match="TRICKY: a NUL byte"):
        render("probe.sh", {"OUT_DIR": "/o", "TRICKY": "a\0b", "EMPTY": ""}, "probe")


def test_a_changed_value_is_one_changed_line_of_the_command(probe_dir):
    before = script_command("probe.sh", {"OUT_DIR": "/o", "TRICKY": "a b", "EMPTY": ""}, "probe")
    after = script_command("probe.sh", {"OUT_DIR": "/o", "TRICKY": "a c", "EMPTY": ""}, "probe")
    changed = [(b, a) for b, a in zip(before.line.splitlines(), after.line.splitlines()) if b != a]
    assert changed == [("  TRICKY='a b' \\", "  TRICKY='a c' \\")]
    assert before.stdin == after.stdin


def test_a_changed_delete_value_is_one_changed_line_of_the_delete(probe_dir):
    before = inline_script_command("probe.sh", {"OUT_DIR": "/o", "TRICKY": "a b", "EMPTY": ""}, "probe").splitlines()
    after = inline_script_command("probe.sh", {"OUT_DIR": "/o", "TRICKY": "a c", "EMPTY": ""}, "probe").splitlines()
    assert [(b, a) for b, a in zip(before, after) if b != a] == [("  TRICKY='a b' \\", "  TRICKY='a c' \\")]


def test_a_script_change_shows_as_text_in_the_stdin_only(probe_dir):
    """preview --diff shows the stdin as text: an edited script line is one changed line there."""
    params = {"OUT_DIR": "/o", "TRICKY": "x", "EMPTY": ""}
    before = script_command("probe.sh", params, "probe")
    (probe_dir / "probe.sh").write_text(PROBE.replace("'%s' \"$EMPTY\"", "'<%s>' \"$EMPTY\""))
    after = script_command("probe.sh", params, "probe")
    assert after.line == before.line
    changed = [(b, a) for b, a in zip(before.stdin.splitlines(), after.stdin.splitlines()) if b != a]
    assert changed == [("printf '%s' \"$EMPTY\" >\"$OUT_DIR/empty\"", "printf '<%s>' \"$EMPTY\" >\"$OUT_DIR/empty\"")]


@pytest.mark.parametrize("script", RENDERED_SCRIPTS)
def test_every_program_script_renders_to_valid_shell(script):
    params = {name: "value with 'quotes' and spaces" for name in declared_parameters(script)}
    text = render_script(script, params)
    assert subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True).returncode == 0
    command = script_command(script, params, script)
    assert subprocess.run(["bash", "-n"], input=command.stdin, capture_output=True, text=True).returncode == 0
    for line in (command.line, inline_script_command(script, params, script)):
        for login_shell in ("/bin/sh", "bash"):
            parsed = subprocess.run([login_shell, "-n", "-c", line], capture_output=True, text=True)
            assert parsed.returncode == 0, parsed.stderr


@pytest.mark.parametrize("script", RENDERED_SCRIPTS)
@pytest.mark.parametrize("sudo", [False, True], ids=["plain", "sudo"])
def test_every_command_line_stays_short_and_holds_no_script_text(script, sudo):
    """pulumi-command repeats a failed step's whole command line: it must stay a few lines."""
    params = {name: "v" for name in declared_parameters(script)}
    command = script_command(script, params, script, sudo=sudo)
    delete = inline_script_command(script, params, script, sudo=sudo)
    # Lines neither a base64 word nor the runner can hold by chance ("fi", "done" and ")" can).
    body = [text for text in map(str.strip, command.stdin.splitlines())
            if len(text) >= 10 and not re.fullmatch(r"[A-Za-z0-9+/=]*", text)]
    assert len(body) > 2
    for line in (command.line, delete):
        assert len(line.splitlines()) < len(params) + 3, line
        assert not [text for text in body if text in line], line


# --- host/model-alias-delete.sh against a real HTTP endpoint -------------------------------------


def _run_alias_delete(api_url: str) -> subprocess.CompletedProcess:
    """The delete as pulumi-command runs it: its own line, with the create script on stdin."""
    _required_tool("curl")
    line = inline_script_command("host/model-alias-delete.sh", {
        "API_URL": api_url, "ALIAS": "qwen3-0.6b:ctx8k", "DELETE_REQUEST": '{"model": "qwen3-0.6b:ctx8k"}',
    }, "model-alias-delete")
    create = script_command("host/model-alias.sh", {name: "x" for name in declared_parameters("host/model-alias.sh")}, "model-alias")
    return subprocess.run(["/bin/sh", "-c", line], input=create.stdin, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    "status, exit_code, says",
    [
        (200, 0, "ollama-gpu: changed: deleted alias qwen3-0.6b:ctx8k"),
        (404, 0, "ollama-gpu: unchanged: alias qwen3-0.6b:ctx8k was already gone"),
        (500, 1, "deleting alias qwen3-0.6b:ctx8k failed with HTTP 500"),
    ],
)
def test_alias_delete_reports_what_the_server_said(api_answering, status, exit_code, says):
    result = _run_alias_delete(api_answering(status))
    assert result.returncode == exit_code, result.stderr
    assert says in result.stdout + result.stderr


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_alias_delete_succeeds_when_the_server_is_already_gone():
    result = _run_alias_delete(f"http://127.0.0.1:{_closed_port()}")
    assert result.returncode == 0, result.stderr
    assert "ollama-gpu: unchanged: server unreachable, nothing to delete" in result.stdout
