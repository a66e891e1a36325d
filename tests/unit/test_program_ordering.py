"""The recipe's order as the engine will enforce it: host prep, then the Docker provider and the
container, then pull and alias. A child waits for everything its parent component depends on, so
"after" is the transitive closure over parent and depends_on (conftest.predecessors)."""

import pytest

from ollama_gpu.config_loader import load_settings
from tests.unit.conftest import (
    AGENT_SOCKET,
    DOCKER_STEP,
    HOST_PREP_STEPS,
    NVIDIA_STEPS,
    STACKS,
    happens_after,
    predecessors,
    registered_id,
    remote_config,
    ollama_stack_values,
)

pytestmark = pytest.mark.usefixtures("ssh_agent")


@pytest.fixture
def stack_run(deploy):
    return lambda stack: deploy(stack, ollama_stack_values(stack))


@pytest.mark.parametrize("stack", ["a10", "v100"])
def test_host_prep_steps_run_one_after_another_docker_first(stack, stack_run):
    run = stack_run(stack)
    steps = [name for name in HOST_PREP_STEPS if name in run.names()]
    assert steps[0] == DOCKER_STEP
    for earlier, later in zip(steps, steps[1:]):
        assert run.by_name(later).depends_on == [run.by_name(earlier).urn], later
    assert run.by_name(steps[0]).depends_on == []


@pytest.mark.parametrize(
    "stack, overrides, last_step",
    [
        pytest.param("a10", {"hostPrep": {"cgroupFix": True}}, "host-gpu-check", id="with-cgroup-fix"),
        pytest.param("a10", {"hostPrep": {"cgroupFix": False}}, "host-gpu-check", id="without-cgroup-fix"),
        pytest.param("a10", {"hostPrep": {"gpuCheck": False}}, "host-nvidia-cgroups", id="no-gpu-check"),
        pytest.param("cpu-vm", {"profile": "none"}, DOCKER_STEP, id="cpu-over-ssh"),
    ],
)
def test_docker_and_the_container_wait_for_the_last_host_prep_step(deploy, stack, overrides, last_step):
    run = deploy(stack, remote_config("a10", overrides))
    # The provider dials the VM's engine, which host prep installs: it must wait too.
    for waiting in ("docker", "ollama-container"):
        assert happens_after(run, waiting, last_step), waiting
        for step in HOST_PREP_STEPS:
            if step in run.names():
                assert happens_after(run, waiting, step), (waiting, step)
                assert not happens_after(run, step, waiting), (waiting, step)


def test_a_cpu_stack_over_ssh_runs_no_nvidia_step(deploy):
    run = deploy("cpu-vm", remote_config("none"))
    assert DOCKER_STEP in run.names()
    assert not set(NVIDIA_STEPS) & set(run.names())


@pytest.mark.parametrize("stack", STACKS)
def test_model_steps_follow_the_container_in_order(stack, stack_run):
    run = stack_run(stack)
    assert happens_after(run, "model-pull", "ollama-container")
    assert happens_after(run, "model-alias", "model-pull")
    assert not happens_after(run, "model-pull", "model-alias")
    assert not happens_after(run, "ollama-container", "model-pull")


@pytest.mark.parametrize("stack", STACKS)
def test_container_follows_its_image_and_volume(stack, stack_run):
    run = stack_run(stack)
    assert happens_after(run, "ollama-container", "ollama-image")
    assert happens_after(run, "ollama-container", "ollama-models")


@pytest.mark.parametrize("stack", STACKS)
def test_the_alias_step_is_replaced_with_its_container_alias_name_or_models_volume(stack, stack_run):
    """A new container starts without the alias loaded and a new volume without the alias: the
    step (create, load, report) runs again. A renamed alias replaces it, deleting the old one."""
    run = stack_run(stack)
    settings = load_settings(stack, ollama_stack_values(stack), agent_socket=AGENT_SOCKET)
    alias = run.by_name("model-alias")
    container = run.by_name("ollama-container")
    assert container.urn in alias.depends_on
    assert set(alias.inputs["triggers"]) == {registered_id(container), settings.server.models_volume, settings.model.alias}
    # The old alias is deleted before the new one is made: a rename leaves nothing behind.
    assert alias.delete_before_replace is True


@pytest.mark.parametrize("stack", STACKS)
def test_a_new_models_volume_is_pulled_into(stack, stack_run):
    run = stack_run(stack)
    assert run.by_name("model-pull").inputs["triggers"] == [run.by_name("ollama-models").inputs["name"]]


def test_local_stack_starts_the_container_with_nothing_before_it(stack_run):
    run = stack_run("local")
    before = {r.name for r in run.resources if r.urn in predecessors(run, run.by_name("ollama-container"))}
    assert before == {"docker", "ollama", "ollama-image", "ollama-models"}


@pytest.mark.parametrize("stack", STACKS)
def test_no_step_waits_for_itself(stack, stack_run):
    run = stack_run(stack)
    for resource in run.resources:
        assert resource.urn not in predecessors(run, resource), resource.name
