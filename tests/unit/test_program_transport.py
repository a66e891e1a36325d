"""What each pulumi-command resource the program registers carries: a create whose command line
holds only the step's values (pulumi-command repeats that line when a step fails) and whose stdin
is the step's script, and a delete that carries its own script, since pulumi-command hands the
resource's one stdin, the create script, to the delete as well."""

import json
import subprocess
from urllib.parse import urlsplit

import pytest

from ollama_gpu.shell import Command, declared_parameters, inline_script_command, script_command
from tests.unit.conftest import LOCAL_COMMAND, REMOTE_COMMAND, REPO, local_config, remote_config, script_parameters

HOST_SCRIPTS = sorted(p.relative_to(REPO / "scripts").as_posix() for p in (REPO / "scripts" / "host").glob("*.sh"))
CONFIGS = [
    pytest.param("local", local_config(), id="local"),
    pytest.param("a10", remote_config("a10"), id="a10-ubuntu"),
    pytest.param("a10", remote_config("a10", user="root"), id="a10-root"),
    pytest.param("v100", remote_config("v100"), id="v100-ubuntu"),
]


def _commands(run) -> list:
    commands = run.of_type(REMOTE_COMMAND) + run.of_type(LOCAL_COMMAND)
    assert commands
    return commands


def _scripts_with(params: dict[str, str]) -> list[str]:
    return [script for script in HOST_SCRIPTS if set(declared_parameters(script)) == set(params)]


def _short(line: str, params: dict[str, str]) -> bool:
    # `[sudo -n] env \`, one line per value, the runner. No value the program passes holds a newline.
    return len(line.splitlines()) < len(params) + 3


@pytest.mark.usefixtures("ssh_agent")
@pytest.mark.parametrize("stack, config", CONFIGS)
def test_every_create_is_a_short_line_with_its_script_on_stdin(deploy, stack, config):
    for resource in _commands(deploy(stack, config)):
        line, stdin = resource.inputs["create"], resource.inputs["stdin"]
        params = script_parameters(line)
        assert _short(line, params), f"{resource.name}:\n{line}"
        # The stdin is the whole script as the host runs it (root or not); the line holds none of it.
        rendered_as = [s for s in _scripts_with(params) if any(
            script_command(s, params, resource.name, sudo=sudo) == Command(line, stdin) for sudo in (False, True))]
        assert len(rendered_as) == 1, resource.name
        assert stdin.startswith("#!") and len(stdin.splitlines()) > 3, resource.name
        assert not set(line.splitlines()) & set(stdin.splitlines()), resource.name


@pytest.mark.usefixtures("ssh_agent")
@pytest.mark.parametrize("stack, config", CONFIGS)
def test_every_delete_is_a_short_line_that_carries_its_own_script(deploy, stack, config):
    deletes = [r for r in _commands(deploy(stack, config)) if r.inputs.get("delete")]
    assert [r.name for r in deletes] == ["model-alias"]
    for resource in deletes:
        line = resource.inputs["delete"]
        params = script_parameters(line)
        assert _short(line, params), line
        assert [s for s in _scripts_with(params) if any(
            inline_script_command(s, params, f"{resource.name}-delete", sudo=sudo) == line for sudo in (False, True)
        )] == ["host/model-alias-delete.sh"]
        assert not set(line.splitlines()) & set(resource.inputs["stdin"].splitlines())


@pytest.mark.parametrize("status, says", [
    (200, "ollama-gpu: changed: deleted alias qwen3-0.6b:ctx8k"),
    (404, "ollama-gpu: unchanged: alias qwen3-0.6b:ctx8k was already gone"),
])
def test_the_recorded_delete_runs_with_the_create_script_on_its_stdin(deploy, api_answering, status, says):
    """As pulumi-command runs it on destroy: `sh -c DELETE` with the resource's stdin attached."""
    port = urlsplit(api_answering(status)).port
    run = deploy("local", local_config({"model": {"base": "qwen3:0.6b", "alias": "qwen3-0.6b:ctx8k"}, "server": {"port": port}}))
    alias = run.by_name("model-alias")
    result = subprocess.run(["/bin/sh", "-c", alias.inputs["delete"]], input=alias.inputs["stdin"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert says in result.stdout
    # Exactly the delete's one request: nothing of the create script (pull, create, load) ran.
    (received,) = api_answering.received
    assert received[0] == "/api/delete" and json.loads(received[1]) == {"model": "qwen3-0.6b:ctx8k"}
