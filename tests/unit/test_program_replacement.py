"""What a config change does on the next `pulumi up`. pulumi-command replaces a command when its
`triggers` change and updates it in place when only its `create` text changes; a docker Container
is replaced when its envs change. So a tuning change must touch exactly the resources it is about:
model parameters → the alias (in place) and the warm-up; server env → the container only."""

import pytest

from tests.unit.conftest import CONTAINER, VOLUME, REMOTE_IMAGE, STACKS, remote_config, script_parameters, stack_values

pytestmark = pytest.mark.usefixtures("ssh_agent")


def _inputs_by_name(run) -> dict:
    return {r.name: r.inputs for r in run.resources}


def _changed(before, after) -> set[str]:
    old, new = _inputs_by_name(before), _inputs_by_name(after)
    assert old.keys() == new.keys()
    return {name for name in old if old[name] != new[name]}


@pytest.mark.parametrize("stack", STACKS)
def test_container_goes_before_its_replacement_and_the_models_volume_outlives_the_stack(stack, deploy):
    run = deploy(stack, stack_values(stack))
    (container,) = run.of_type(CONTAINER)
    (volume,) = run.of_type(VOLUME)
    (image,) = run.of_type(REMOTE_IMAGE)
    # Fixed container name and host port: create-before-delete would collide on both.
    assert container.delete_before_replace is True
    assert volume.retain_on_delete is True
    # Destroy must still succeed (protect would make it fail).
    assert volume.protect is False
    assert image.inputs["keepLocally"] is True
    assert container.inputs["image"] != image.inputs["name"], "the container must follow the pulled image id"


def test_changing_a_model_parameter_updates_only_the_alias_and_reloads_it(deploy):
    before = deploy("a10", remote_config("a10"))
    after = deploy("a10", remote_config("a10", {"model": {"parameters": {"numPredict": 16384, "temperature": 0.6}}}))

    # The verify step re-reads the server whenever the alias changes.
    assert _changed(before, after) == {"model-alias", "model-warm", "verify"}
    old_alias, new_alias = before.by_name("model-alias").inputs, after.by_name("model-alias").inputs
    # No triggers: the new create text is an in-place update, not a replace (whose delete would
    # remove the alias after the new one was created).
    assert "triggers" not in old_alias and "triggers" not in new_alias
    assert {k for k in old_alias if old_alias[k] != new_alias[k]} == {"create"}
    changed_lines = set(old_alias["create"].splitlines()) ^ set(new_alias["create"].splitlines())
    assert all(line.startswith("  CREATE_REQUEST=") for line in changed_lines), changed_lines
    assert script_parameters(new_alias["create"])["CREATE_REQUEST"] != script_parameters(old_alias["create"])["CREATE_REQUEST"]

    old_warm, new_warm = before.by_name("model-warm").inputs, after.by_name("model-warm").inputs
    assert old_warm["create"] == new_warm["create"]
    assert old_warm["triggers"] != new_warm["triggers"]


def test_changing_a_server_env_value_replaces_only_the_container(deploy):
    before = deploy("a10", remote_config("a10"))
    after = deploy("a10", remote_config("a10", {"server": {"env": {"gpuOverhead": "2GiB"}}}))

    assert _changed(before, after) == {"ollama"}
    old, new = before.by_name("ollama").inputs, after.by_name("ollama").inputs
    assert {k for k in old if old[k] != new[k]} == {"envs"}
    assert set(old["envs"]) ^ set(new["envs"]) == {"OLLAMA_GPU_OVERHEAD=1073741824", "OLLAMA_GPU_OVERHEAD=2147483648"}


def test_changing_the_image_reruns_the_gpu_check_and_recreates_the_container_only(deploy):
    before = deploy("a10", remote_config("a10"))
    after = deploy("a10", remote_config("a10", {"server": {"image": "ollama/ollama:0.24.1"}}))
    assert _changed(before, after) == {"ollama-image", "gpu-check", "ollama"}
    old, new = before.by_name("ollama").inputs, after.by_name("ollama").inputs
    assert {k for k in old if old[k] != new[k]} == {"image"}


def test_changing_the_base_model_pulls_it_and_rebuilds_the_alias(deploy):
    before = deploy("local", {"profile": "none"})
    after = deploy("local", {"profile": "none", "model": {"base": "qwen3:1.7b"}})
    assert _changed(before, after) == {"model-pull", "model-alias", "model-warm", "verify"}
    assert script_parameters(after.by_name("model-pull").inputs["create"])["BASE_MODEL"] == "qwen3:1.7b"


def test_a_rerun_with_the_same_config_changes_nothing(deploy):
    config = remote_config("v100", {"hostPrep": {"cgroupFix": True}})
    assert _changed(deploy("v100", config), deploy("v100", config)) == set()
