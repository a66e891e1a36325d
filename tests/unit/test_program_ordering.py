"""The recipe's order as the engine will enforce it: host prep, then the container, then pull,
alias and warm-up. A child waits for everything its parent component depends on, so "after" is
the transitive closure over parent and depends_on (conftest.predecessors)."""

import pytest

from tests.unit.conftest import (
    HOST_PREP_STEPS,
    STACKS,
    happens_after,
    predecessors,
    registered_id,
    remote_config,
    stack_values,
)

pytestmark = pytest.mark.usefixtures("ssh_agent")


@pytest.fixture
def stack_run(deploy):
    return lambda stack: deploy(stack, stack_values(stack))


@pytest.mark.parametrize("stack", ["a10", "v100"])
def test_host_prep_steps_run_one_after_another(stack, stack_run):
    run = stack_run(stack)
    steps = [name for name in HOST_PREP_STEPS if name in run.names()]
    for earlier, later in zip(steps, steps[1:]):
        assert run.by_name(later).depends_on == [run.by_name(earlier).urn], later
    assert run.by_name(steps[0]).depends_on == []


@pytest.mark.parametrize(
    "overrides, last_step",
    [
        pytest.param({"hostPrep": {"cgroupFix": True}}, "gpu-check", id="with-cgroup-fix"),
        pytest.param({"hostPrep": {"cgroupFix": False}}, "gpu-check", id="without-cgroup-fix"),
        pytest.param({"hostPrep": {"cgroupFix": True, "gpuCheck": False}}, "nvidia-cgroup-fix", id="no-gpu-check"),
        pytest.param({"hostPrep": {"cgroupFix": False, "gpuCheck": False}}, "docker-nvidia-runtime", id="bare"),
    ],
)
def test_container_waits_for_the_last_host_prep_step(deploy, overrides, last_step):
    run = deploy("a10", remote_config("a10", overrides))
    assert happens_after(run, "ollama", last_step)
    for step in HOST_PREP_STEPS:
        if step in run.names():
            assert happens_after(run, "ollama", step), step
            assert not happens_after(run, step, "ollama"), step


@pytest.mark.parametrize("stack", STACKS)
def test_model_steps_follow_the_container_in_order(stack, stack_run):
    run = stack_run(stack)
    assert happens_after(run, "model-pull", "ollama")
    assert happens_after(run, "model-alias", "model-pull")
    assert happens_after(run, "model-warm", "model-alias")
    assert not happens_after(run, "model-pull", "model-alias")
    assert not happens_after(run, "ollama", "model-pull")


@pytest.mark.parametrize("stack", STACKS)
def test_container_follows_its_image_and_volume(stack, stack_run):
    run = stack_run(stack)
    assert happens_after(run, "ollama", "ollama-image")
    assert happens_after(run, "ollama", "ollama-models")


@pytest.mark.parametrize("stack", STACKS)
def test_warm_up_is_triggered_by_a_new_container_and_a_changed_alias(stack, stack_run):
    run = stack_run(stack)
    warm = run.by_name("model-warm")
    container = run.by_name("ollama")
    assert container.urn in warm.depends_on
    assert registered_id(container) in warm.inputs["triggers"]
    assert run.by_name("model-alias").inputs["create"] in warm.inputs["triggers"]


def test_local_stack_starts_the_container_with_nothing_before_it(stack_run):
    run = stack_run("local")
    before = {r.name for r in run.resources if r.urn in predecessors(run, run.by_name("ollama"))}
    assert before == {"ollama-server", "ollama-image", "ollama-models"}


@pytest.mark.parametrize("stack", STACKS)
def test_no_step_waits_for_itself(stack, stack_run):
    run = stack_run(stack)
    for resource in run.resources:
        assert resource.urn not in predecessors(run, resource), resource.name


def test_warm_up_can_be_switched_off(deploy):
    run = deploy("a10", remote_config("a10", {"model": {"warm": False}}))
    assert "model-warm" not in run.names()
    assert {"model-pull", "model-alias"} <= set(run.names())
