"""`pulumi preview` of the local stack with the gateway enabled, under the real engine: a key set
with `pulumi config set --secret --path` reaches the program as a secret and is accepted, the
engine (and the docker provider's checks of the container's network mode and secret upload) plans
exactly what the offline runner records, the policy pack passes, and no key shows in the output;
a key set without --secret is refused with one message that does not show it."""

import json
from pathlib import Path

import pytest

from ollama_gpu.config_loader import values_from_stack_file
from ollama_gpu.offline import run_program
from ollama_gpu.stack_render import secret_keys
from tests.e2e.engine import Engine, program_copy, run_pulumi

pytestmark = pytest.mark.integration

STACK = "local"
KEY = "e2e-gateway-key-" + "9" * 24
PLAIN_KEY = "e2e-plain-key-" + "7" * 24


@pytest.fixture
def gateway_stack(pulumi_engine: Engine, docker_engine: None, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    program = program_copy(tmp_path / "program")
    env = pulumi_engine.env(tmp_path / "state", tmp_path / "home")
    (tmp_path / "state").mkdir()
    run_pulumi(["stack", "init", STACK], program, env)
    run_pulumi(["config", "set", "--path", "gateway.enabled", "true", "-s", STACK], program, env)
    run_pulumi(["config", "set", "--secret", "--path", "gateway.apiKeys[0]", KEY, "-s", STACK], program, env)
    return program, env


def test_preview_plans_the_gateway_the_offline_runner_records_and_shows_no_key(gateway_stack: tuple[Path, dict[str, str]]) -> None:
    program, env = gateway_stack
    preview = run_pulumi(["preview", "--json", "-s", STACK], program, env)

    steps = {step["urn"].rpartition("::")[2]: step["op"] for step in json.loads(preview.stdout)["steps"]}
    values = values_from_stack_file(program / f"Pulumi.{STACK}.yaml")
    offline = run_program(STACK, values, secret_keys=secret_keys(values))
    assert {"gateway", "gateway-container", "gateway-data", "gateway-ca-root"} <= set(steps)
    assert steps == {**{resource.name: "create" for resource in offline.resources}, f"ollama-gpu-{STACK}": "create"}
    assert KEY not in preview.stdout + preview.stderr
    assert KEY not in (program / f"Pulumi.{STACK}.yaml").read_text()


def test_the_policy_pack_passes_the_gateway(gateway_stack: tuple[Path, dict[str, str]]) -> None:
    program, env = gateway_stack
    preview = run_pulumi(["preview", "--policy-pack", "policy", "-s", STACK], program, env)
    assert "[mandatory]" not in preview.stdout
    assert KEY not in preview.stdout + preview.stderr


def test_a_key_set_without_secret_is_refused_without_being_shown(gateway_stack: tuple[Path, dict[str, str]]) -> None:
    program, env = gateway_stack
    run_pulumi(["config", "set", "--path", "gateway.apiKeys[1]", PLAIN_KEY, "-s", STACK], program, env)
    preview = run_pulumi(["preview", "-s", STACK], program, env, check=False)
    assert preview.returncode != 0
    assert "ollama-gpu:gateway.apiKeys[1] = [secret]: is stored in plain text" in preview.stdout + preview.stderr
    assert PLAIN_KEY not in preview.stdout + preview.stderr
