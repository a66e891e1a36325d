"""`pulumi preview` of the committed local stack under the real engine: the CLI, the Python
language host and the providers the SDKs ask for all start, the engine is asked for the same
resources the offline runner records (make plan and the unit tests rely on that runner), and the
policy pack runs as CI runs it."""

import json
from pathlib import Path

import pytest

from ollama_gpu.config_loader import values_from_stack_file
from ollama_gpu.offline import run_program
from tests.e2e.engine import Engine, program_copy, run_pulumi

pytestmark = pytest.mark.integration

STACK = "local"


@pytest.fixture
def local_stack(pulumi_engine: Engine, docker_engine: None, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the program with the local stack initialised on a fresh file backend, and the
    environment to run pulumi in it."""
    program = program_copy(tmp_path / "program")
    env = pulumi_engine.env(tmp_path / "state", tmp_path / "home")
    (tmp_path / "state").mkdir()
    run_pulumi(["stack", "init", STACK], program, env)
    return program, env


def planned_steps(preview_json: str) -> dict[str, str]:
    """URN -> operation, for every step of `pulumi preview --json`."""
    return {step["urn"]: step["op"] for step in json.loads(preview_json)["steps"]}


def test_preview_of_the_local_stack_creates_what_the_program_registers(
    local_stack: tuple[Path, dict[str, str]],
) -> None:
    program, env = local_stack

    preview = run_pulumi(["preview", "--json", "-s", STACK], program, env)

    steps = planned_steps(preview.stdout)
    offline = run_program(STACK, values_from_stack_file(program / f"Pulumi.{STACK}.yaml"))
    assert {urn.rpartition("::")[2]: op for urn, op in steps.items()} == {
        **{resource.name: "create" for resource in offline.resources},
        f"ollama-gpu-{STACK}": "create",  # the stack itself
    }
    types = {urn.split("::")[2].rpartition("$")[2] for urn in steps}
    assert {"docker:index/container:Container", "command:local:Command", "pulumi:providers:docker"} <= types


def test_the_policy_pack_runs_and_passes_the_local_stack(local_stack: tuple[Path, dict[str, str]]) -> None:
    program, env = local_stack

    preview = run_pulumi(["preview", "--policy-pack", "policy", "-s", STACK], program, env)

    assert "Loading policy packs...: done" in preview.stdout
    assert "ollama-gpu@v1.0.0 (local: policy)" in preview.stdout
    assert "[mandatory]" not in preview.stdout


def test_the_policy_pack_stops_a_program_whose_volume_would_be_lost(local_stack: tuple[Path, dict[str, str]]) -> None:
    """No valid stack violates the pack (the program refuses the same things first), so the
    violating case is a program whose models volume lost its retain label, as a careless edit
    would leave it: the pack must fail the preview, as CI's preview would."""
    program, env = local_stack
    server = program / "components" / "ollama_server.py"
    labelled = "labels=[docker.VolumeLabelArgs(label=RETAIN_LABEL, value=\"true\")],"  # in retained_volume
    assert labelled in server.read_text()
    server.write_text(server.read_text().replace(labelled, ""))

    preview = run_pulumi(["preview", "--policy-pack", "policy", "-s", STACK], program, env, check=False)

    assert preview.returncode != 0
    assert "[mandatory]" in preview.stdout and "models-volume-retained" in preview.stdout, preview.stdout


def test_a_bad_config_value_is_one_message_under_the_real_engine(local_stack: tuple[Path, dict[str, str]]) -> None:
    program, env = local_stack
    run_pulumi(["config", "set", "--path", "server.port", "true", "-s", STACK], program, env)

    preview = run_pulumi(["preview", "-s", STACK], program, env, check=False)

    output = preview.stdout + preview.stderr
    assert preview.returncode != 0
    assert output.count("ollama-gpu:server.port = True") == 1, output
    assert "unhandled error" not in output and "Traceback" not in output, output
