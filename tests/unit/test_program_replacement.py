"""What a config change does on the next `pulumi up`. pulumi-command replaces a command when its
`triggers` change and updates it in place when only its `create` text changes; a docker Container
is replaced when its envs, command or volumes change. So a change must touch exactly the resources
it is about: model parameters → the alias step (in place: create, load, report again); server env →
the container, and with the new container's id the alias step; the alias name or the models volume
→ the alias step is replaced, old alias deleted first."""

import difflib
import json
import shutil

import pytest

from ollama_gpu import shell
from tests.unit.conftest import (
    CONTAINER,
    DOCKER_STEP,
    MODEL_STEPS,
    REMOTE_IMAGE,
    REPO,
    STACKS,
    VOLUME,
    registered_id,
    remote_config,
    script_parameters,
    ollama_stack_values,
)

pytestmark = pytest.mark.usefixtures("ssh_agent")


def _inputs_by_name(run) -> dict:
    return {r.name: r.inputs for r in run.resources}


def _changed(before, after) -> set[str]:
    old, new = _inputs_by_name(before), _inputs_by_name(after)
    assert old.keys() == new.keys()
    return {name for name in old if old[name] != new[name]}


def _changed_inputs(before, after, name: str) -> set[str]:
    old, new = before.by_name(name).inputs, after.by_name(name).inputs
    return {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


def _script_body(command: str) -> list[str]:
    """The command's lines other than the NAME=value parameter bindings."""
    bound = {f"{name}=" for name in script_parameters(command)}
    return [line for line in command.splitlines() if not line.lstrip().startswith(tuple(bound))]


@pytest.mark.parametrize("stack", STACKS)
def test_container_goes_before_its_replacement_and_the_models_volume_outlives_the_stack(stack, deploy):
    run = deploy(stack, ollama_stack_values(stack))
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


@pytest.mark.parametrize("parameters", [
    pytest.param({"numCtx": 40960}, id="numCtx"),
    pytest.param({"numPredict": 16384, "temperature": 0.6}, id="numPredict-and-temperature"),
])
def test_changing_a_model_parameter_updates_only_the_alias_step_in_place(deploy, parameters):
    before = deploy("a10", remote_config("a10"))
    after = deploy("a10", remote_config("a10", {"model": {"parameters": parameters}}))

    assert _changed(before, after) == {"model-alias"}
    # Only the create text: an in-place update (the step creates, loads and reports again), not a
    # replace, which would re-run the delete and leave the alias missing in between.
    assert _changed_inputs(before, after, "model-alias") == {"create"}
    old, new = before.by_name("model-alias").inputs["create"], after.by_name("model-alias").inputs["create"]
    assert _script_body(old) == _script_body(new), "only parameter lines may differ"
    created = json.loads(script_parameters(new)["CREATE_REQUEST"])["parameters"]
    for key, value in parameters.items():
        api_name = {"numCtx": "num_ctx", "numPredict": "num_predict", "temperature": "temperature"}[key]
        assert created[api_name] == value


@pytest.mark.parametrize("env", [{"keepAlive": "30m"}, {"debug": False}, {"maxQueue": 64}])
def test_changing_a_server_env_value_replaces_the_container_and_with_it_reruns_the_alias_step(deploy, env):
    before = deploy("a10", remote_config("a10"))
    after = deploy("a10", remote_config("a10", {"server": {"env": env}}))

    assert _changed(before, after) == {"ollama-container"}
    assert _changed_inputs(before, after, "ollama-container") == {"envs"}
    # A replaced container gets a new id, which replaces the alias step: the new server has the
    # alias loaded (and reported) before `pulumi up` ends.
    container, alias = after.by_name("ollama-container"), after.by_name("model-alias")
    assert registered_id(container) in alias.inputs["triggers"]


def test_changing_the_gpu_reserve_passes_the_new_bytes_to_the_server(deploy):
    before = deploy("a10", remote_config("a10"))
    after = deploy("a10", remote_config("a10", {"server": {"env": {"gpuOverhead": "2GiB"}}}))
    old, new = before.by_name("ollama-container").inputs, after.by_name("ollama-container").inputs
    assert set(old["envs"]) ^ set(new["envs"]) == {"OLLAMA_GPU_OVERHEAD=1073741824", "OLLAMA_GPU_OVERHEAD=2147483648"}
    # The reserve also moves the planned layer split, which the alias step carries; nothing
    # is pulled again and no host step re-runs.
    assert _changed(before, after) <= {"ollama-container", "model-alias"}


def test_renaming_the_alias_replaces_the_alias_step_and_pulls_nothing(deploy):
    before = deploy("a10", remote_config("a10"))
    after = deploy("a10", remote_config("a10", {"model": {"alias": "qwen3-30b:renamed"}}))
    changed = _changed(before, after)
    assert "model-alias" in changed and "model-pull" not in changed
    assert "triggers" in _changed_inputs(before, after, "model-alias")
    assert "qwen3-30b:renamed" in after.by_name("model-alias").inputs["triggers"]
    # The replaced step's delete removes the old name; the new delete names the new alias.
    delete = script_parameters(before.by_name("model-alias").inputs["delete"])
    assert json.loads(delete["DELETE_REQUEST"]) == {"model": "qwen3-30b-a3b-2507-q8:ctx32k"}
    assert after.by_name("model-alias").delete_before_replace is True


def test_a_new_models_volume_replaces_the_container_pull_and_alias_step(deploy):
    before = deploy("a10", remote_config("a10"))
    after = deploy("a10", remote_config("a10", {"server": {"modelsVolume": "ollama-models-2"}}))
    assert _changed(before, after) == {"ollama-models", "ollama-container", "model-pull", "model-alias"}
    # An empty volume: the pull runs again into it, and the alias is made again on it.
    assert _changed_inputs(before, after, "model-pull") == {"triggers"}
    assert _changed_inputs(before, after, "model-alias") == {"triggers"}
    assert after.by_name("model-pull").inputs["triggers"] == ["ollama-models-2"]
    assert "ollama-models-2" in after.by_name("model-alias").inputs["triggers"]


def test_changing_the_image_reruns_the_gpu_check_and_recreates_the_container_only(deploy):
    before = deploy("a10", remote_config("a10"))
    after = deploy("a10", remote_config("a10", {"server": {"image": "ollama/ollama:0.24.1"}}))
    assert _changed(before, after) == {"ollama-image", "host-gpu-check", "ollama-container"}
    assert _changed_inputs(before, after, "ollama-container") == {"image"}


def test_changing_the_base_model_pulls_it_and_rebuilds_the_alias(deploy):
    before = deploy("local", {"profile": "none"})
    after = deploy("local", {"profile": "none", "model": {"base": "qwen3:1.7b"}})
    assert _changed(before, after) == {"model-pull", "model-alias"}
    assert script_parameters(after.by_name("model-pull").inputs["create"])["PULL_NAME"] == "qwen3:1.7b"


def test_a_docker_engine_setting_reruns_only_that_host_step(deploy):
    before = deploy("a10", remote_config("a10"))
    after = deploy("a10", remote_config("a10", {"hostPrep": {"dockerRegistryMirror": "http://10.0.0.5:5000"}}))
    assert _changed(before, after) == {DOCKER_STEP}


@pytest.fixture
def edited_scripts(tmp_path, monkeypatch):
    """Edits a copy of scripts/ that the program then renders from: edit(path, old, new)."""
    copy = tmp_path / "scripts"
    shutil.copytree(REPO / "scripts", copy)
    monkeypatch.setattr(shell, "SCRIPTS", copy)

    def edit(path: str, old: str, new: str) -> None:
        script = copy / path
        text = script.read_text()
        assert text.count(old) == 1, f"{path} no longer holds {old!r}"
        script.write_text(text.replace(old, new))

    return edit


def _changed_lines(old: str, new: str) -> list[str]:
    """What `pulumi preview --diff` shows of a text input, less the context lines."""
    return [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
            if line[:1] in "-+" and line[:3] not in ("---", "+++")]


PULL_LINE = 'echo "ollama-gpu: pulling $PULL_NAME (at most ${PULL_TIMEOUT_SECONDS}s)"'


def test_a_script_edit_shows_as_its_changed_line_in_that_steps_stdin(deploy, edited_scripts):
    before = deploy("a10", remote_config("a10"))
    edited_scripts("host/model-pull.sh", PULL_LINE, PULL_LINE.replace("pulling", "now pulling"))
    after = deploy("a10", remote_config("a10"))

    assert _changed(before, after) == {"model-pull"}
    # The command line stays as it was: the step updates in place and the diff is the script's text.
    assert _changed_inputs(before, after, "model-pull") == {"stdin"}
    old, new = before.by_name("model-pull").inputs["stdin"], after.by_name("model-pull").inputs["stdin"]
    assert _changed_lines(old, new) == [f"-{PULL_LINE}", f"+{PULL_LINE.replace('pulling', 'now pulling')}"]


def test_a_library_edit_shows_in_the_stdin_of_each_step_that_inlines_it(deploy, edited_scripts):
    before = deploy("a10", remote_config("a10"))
    edited_scripts("host/lib/api.sh", "the server did not answer", "no answer from the server")
    after = deploy("a10", remote_config("a10"))

    assert _changed(before, after) == set(MODEL_STEPS)
    for name in MODEL_STEPS:
        assert _changed_inputs(before, after, name) == {"stdin"}
        changed = _changed_lines(before.by_name(name).inputs["stdin"], after.by_name(name).inputs["stdin"])
        assert len(changed) == 2 and "no answer from the server" in changed[1], name


def test_a_delete_script_edit_changes_only_that_delete(deploy, edited_scripts):
    """The delete carries its script base64-encoded in its line (the resource's stdin is the
    create's): an edit there changes that one input, and no step runs again for it."""
    before = deploy("a10", remote_config("a10"))
    edited_scripts("host/model-alias-delete.sh", "deleted alias $ALIAS", "removed alias $ALIAS")
    after = deploy("a10", remote_config("a10"))
    assert _changed(before, after) == {"model-alias"}
    assert _changed_inputs(before, after, "model-alias") == {"delete"}
    assert script_parameters(after.by_name("model-alias").inputs["delete"]) == script_parameters(before.by_name("model-alias").inputs["delete"])


def test_a_comment_edit_in_a_script_changes_nothing(deploy, edited_scripts):
    before = deploy("a10", remote_config("a10"))
    edited_scripts("host/model-pull.sh", PULL_LINE, f"# Says how long it may take.\n{PULL_LINE}")
    edited_scripts("host/model-alias-delete.sh", "set -euo pipefail\n", "set -euo pipefail\n\n# Reworded.\n")
    assert _changed(before, deploy("a10", remote_config("a10"))) == set()


@pytest.mark.parametrize("stack", STACKS)
def test_a_rerun_with_the_same_config_changes_nothing(deploy, stack):
    assert _changed(deploy(stack, ollama_stack_values(stack)), deploy(stack, ollama_stack_values(stack))) == set()
