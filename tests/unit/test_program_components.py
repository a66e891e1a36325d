"""What each component registers for each stack, under the recording mocks: the container's env,
the alias's Modelfile parameters, the GPU and CPU branches, and how commands reach the host.
Expectations are derived from the validated settings (or written out literally), never from the
program's own rendering helpers."""

import json
import re
from pathlib import Path
from typing import Any, Optional

import pytest

from ollama_gpu import knobs
from ollama_gpu.config_loader import load_settings
from ollama_gpu.settings import ModelParameters, Settings
from tests.unit.conftest import (
    AGENT_SOCKET,
    CONTAINER,
    HOST_KEY,
    HOST_PREP_STEPS,
    LOCAL_COMMAND,
    MODEL_STEPS,
    REMOTE_COMMAND,
    STACKS,
    container_env,
    local_config,
    remote_config,
    script_parameters,
    stack_values,
)

pytestmark = pytest.mark.usefixtures("ssh_agent")

GPU_STACKS = ("a10", "v100")
# What Ollama assumes when the variable is absent, for the variables the program may leave out.
_UNSET_MEANS = {"OLLAMA_DEBUG": "0", "OLLAMA_ORIGINS": "", "OLLAMA_CONTEXT_LENGTH": None}


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def _env_text(value: Any) -> Optional[str]:
    """A typed setting as the text Ollama's env parsing expects."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return ",".join(value)
    return str(int(value)) if isinstance(value, int) else str(value)


def expected_env(settings: Settings) -> dict[str, Optional[str]]:
    """Every typed server.env setting under the variable knobs.TYPED_ENV_VARS binds it to, plus
    extraEnv verbatim. None: must be absent."""
    expected: dict[str, Optional[str]] = {}
    for name, key in knobs.TYPED_ENV_VARS.items():
        if key.startswith("server.env."):
            expected[name] = _env_text(getattr(settings.server.env, _snake(key.removeprefix("server.env."))))
    return {**expected, **settings.server.env.extra_env}


def stack_settings(stack: str) -> Settings:
    return load_settings(stack, stack_values(stack), agent_socket=AGENT_SOCKET)


def create_request(run) -> dict[str, Any]:
    return json.loads(script_parameters(run.by_name("model-alias").inputs["create"])["CREATE_REQUEST"])


def commands(run) -> list:
    return run.of_type(REMOTE_COMMAND) + run.of_type(LOCAL_COMMAND)


def first_line(resource) -> str:
    return resource.inputs["create"].splitlines()[0]


@pytest.fixture
def stack_run(deploy):
    return lambda stack: deploy(stack, stack_values(stack))


# --- The container's environment ---------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_env_var_lands_in_the_container_as_settings_say(stack, stack_run):
    env = container_env(stack_run(stack))
    for name, value in expected_env(stack_settings(stack)).items():
        assert env.get(name, _UNSET_MEANS.get(name)) == value, name
    assert set(env) <= knobs.SERVER_ENV_VARS, "a variable the pinned server does not read"
    assert not set(env) & set(knobs.REMOVED_ENV_VARS)
    # The image already listens on 0.0.0.0:11434 inside and keeps models under /root/.ollama.
    assert "OLLAMA_HOST" not in env and "OLLAMA_MODELS" not in env


@pytest.mark.parametrize("stack", STACKS)
def test_effective_env_output_is_what_the_container_gets(stack, stack_run):
    run = stack_run(stack)
    assert run.outputs["effective_env"] == container_env(run)


def test_a10_container_env_is_the_operators_recipe(stack_run):
    env = container_env(stack_run("a10"))
    assert {k: env[k] for k in ("OLLAMA_FLASH_ATTENTION", "OLLAMA_KV_CACHE_TYPE", "OLLAMA_GPU_OVERHEAD", "OLLAMA_DEBUG")} == {
        "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_KV_CACHE_TYPE": "q8_0",
        "OLLAMA_GPU_OVERHEAD": "1073741824",
        "OLLAMA_DEBUG": "1",
    }
    assert "OLLAMA_NO_MMAP" not in env


def test_every_server_setting_reaches_the_env_in_ollamas_format(deploy):
    config = local_config({"server": {"env": {
        "flashAttention": True, "kvCacheType": "q4_0", "gpuOverhead": "1GiB", "keepAlive": "30m",
        "numParallel": 2, "maxLoadedModels": 3, "maxQueue": 64, "loadTimeout": "20m", "contextLength": 4096,
        "debug": False, "origins": ["http://a.example", "app://b"],
        "extraEnv": {"OLLAMA_NOPRUNE": "1", "OLLAMA_SCHED_SPREAD": "1"},
    }}})
    env = container_env(deploy("local", config))
    assert env.pop("OLLAMA_DEBUG", "0") == "0"
    assert env == {
        "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_KV_CACHE_TYPE": "q4_0",
        "OLLAMA_GPU_OVERHEAD": "1073741824",
        "OLLAMA_KEEP_ALIVE": "30m",
        "OLLAMA_NUM_PARALLEL": "2",
        "OLLAMA_MAX_LOADED_MODELS": "3",
        "OLLAMA_MAX_QUEUE": "64",
        "OLLAMA_LOAD_TIMEOUT": "20m",
        "OLLAMA_CONTEXT_LENGTH": "4096",
        "OLLAMA_ORIGINS": "http://a.example,app://b",
        "OLLAMA_NOPRUNE": "1",
        "OLLAMA_SCHED_SPREAD": "1",
    }


@pytest.mark.parametrize("written, in_bytes", [("1GiB", 1073741824), ("512MiB", 536870912), ("1.5GB", 1500000000), (0, 0)])
def test_gpu_overhead_is_passed_in_bytes(deploy, written, in_bytes):
    env = container_env(deploy("a10", remote_config("a10", {"server": {"env": {"gpuOverhead": written}}})))
    assert env["OLLAMA_GPU_OVERHEAD"] == str(in_bytes)


def test_flash_attention_off_is_said_explicitly(deploy):
    """Recent Ollama turns it on by default, so leaving the variable out would not turn it off."""
    config = local_config({"server": {"env": {"flashAttention": False, "kvCacheType": "f16"}}})
    assert container_env(deploy("local", config))["OLLAMA_FLASH_ATTENTION"] == "0"


# --- The alias's Modelfile parameters ----------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
def test_every_modelfile_parameter_lands_in_the_create_request(stack, stack_run):
    run = stack_run(stack)
    settings = stack_settings(stack)
    parameters = settings.model.parameters
    expected = {name: getattr(parameters, name) for name in ModelParameters.model_fields if getattr(parameters, name) is not None}
    request = create_request(run)
    assert request == {"model": settings.model.alias, "from": settings.model.base, "parameters": expected, "stream": False}
    assert set(request["parameters"]) <= knobs.MODELFILE_PARAMETERS
    assert run.outputs["alias_request"] == request
    assert run.outputs["alias"] == settings.model.alias


def test_all_nineteen_parameters_reach_ollama_under_their_own_names(deploy):
    config = local_config({"model": {"parameters": {
        "numCtx": 16384, "numPredict": 4000, "numKeep": 24, "useMmap": True, "numBatch": 256, "numGpu": 30,
        "mainGpu": 1, "numThread": 6, "seed": 42, "topK": 20, "topP": 0.95, "minP": 0.05, "typicalP": 0.9,
        "repeatLastN": 128, "temperature": 0.6, "repeatPenalty": 1.1, "presencePenalty": 0.5,
        "frequencyPenalty": 0.25, "stop": ["<|im_end|>", "it's \"done\""],
    }}})
    assert create_request(deploy("local", config))["parameters"] == {
        "num_ctx": 16384, "num_predict": 4000, "num_keep": 24, "use_mmap": True, "num_batch": 256, "num_gpu": 30,
        "main_gpu": 1, "num_thread": 6, "seed": 42, "top_k": 20, "top_p": 0.95, "min_p": 0.05, "typical_p": 0.9,
        "repeat_last_n": 128, "temperature": 0.6, "repeat_penalty": 1.1, "presence_penalty": 0.5,
        "frequency_penalty": 0.25, "stop": ["<|im_end|>", "it's \"done\""],
    }


def test_settings_offer_exactly_the_parameters_the_pinned_version_reads():
    assert set(ModelParameters.model_fields) == knobs.MODELFILE_PARAMETERS
    assert not knobs.MODELFILE_PARAMETERS & set(knobs.REMOVED_MODELFILE_PARAMETERS)


# --- GPU and CPU branches ------------------------------------------------------------------------


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_gpu_stacks_get_all_gpus_and_host_prep(stack, stack_run):
    run = stack_run(stack)
    settings = stack_settings(stack)
    (container,) = run.of_type(CONTAINER)
    assert container.inputs["gpus"] == "all"
    expected_steps = {s for s in HOST_PREP_STEPS if s != "nvidia-cgroup-fix" or settings.host_prep.cgroup_fix}
    assert {r.name for r in commands(run) if r.name in HOST_PREP_STEPS} == expected_steps
    assert len(run.of_type("ollama-gpu:index:GpuHostPrep")) == 1


def test_cgroup_fix_follows_its_setting(deploy):
    assert "nvidia-cgroup-fix" in deploy("v100", remote_config("v100", {"hostPrep": {"cgroupFix": True}})).names()
    assert "nvidia-cgroup-fix" not in deploy("a10", remote_config("a10", {"hostPrep": {"cgroupFix": False}})).names()


def test_gpu_check_can_be_left_out(deploy):
    run = deploy("a10", remote_config("a10", {"hostPrep": {"gpuCheck": False}}))
    assert "gpu-check" not in run.names() and "docker-nvidia-runtime" in run.names()


def test_cpu_stack_has_no_gpu_and_no_host_prep(stack_run):
    run = stack_run("local")
    (container,) = run.of_type(CONTAINER)
    assert container.inputs.get("gpus") is None
    assert not run.of_type("ollama-gpu:index:GpuHostPrep")
    assert not set(run.names()) & set(HOST_PREP_STEPS)
    assert sorted(r.name for r in commands(run)) == sorted([*MODEL_STEPS, "verify"])


@pytest.mark.parametrize("image", [None, "registry.example:5000/mirror/ollama:0.24.0-cuda"])
def test_gpu_check_runs_the_server_image(deploy, image):
    overrides = {"server": {"image": image}} if image else {}
    run = deploy("a10", remote_config("a10", overrides))
    server_image = run.by_name("ollama-image").inputs["name"]
    assert server_image == (image or stack_settings("a10").server.image)
    assert script_parameters(run.by_name("gpu-check").inputs["create"]) == {"IMAGE": server_image}


@pytest.mark.parametrize("stack", STACKS)
def test_container_publishes_the_api_on_the_configured_address_and_mounts_the_models(stack, stack_run):
    settings = stack_settings(stack)
    (container,) = stack_run(stack).of_type(CONTAINER)
    assert container.inputs["ports"] == [{"internal": 11434, "external": settings.server.port, "ip": "127.0.0.1"}]
    assert container.inputs["volumes"] == [{"volumeName": settings.server.models_volume, "containerPath": "/root/.ollama"}]
    assert container.inputs["name"] == settings.server.container_name
    assert "labels" not in container.inputs


# --- How commands reach the host -----------------------------------------------------------------


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_ssh_stacks_use_remote_commands_pinned_to_the_host_key(stack, stack_run):
    run = stack_run(stack)
    host = stack_settings(stack).host
    assert not run.of_type(LOCAL_COMMAND)
    for command in run.of_type(REMOTE_COMMAND):
        connection = command.inputs["connection"]["value"]
        assert connection["hostKey"] == host.host_key
        assert (connection["host"], connection["port"], connection["user"]) == (host.address, host.port, host.user)
        assert connection["agentSocketPath"] == AGENT_SOCKET


def test_local_stack_runs_commands_on_this_machine(stack_run):
    run = stack_run("local")
    assert not run.of_type(REMOTE_COMMAND)
    assert all("connection" not in c.inputs for c in run.of_type(LOCAL_COMMAND))
    assert run.by_name("docker-host").inputs["host"] == "unix:///var/run/docker.sock"


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_docker_over_ssh_checks_the_same_pinned_host_key(stack, stack_run, offline_env):
    run = stack_run(stack)
    host = stack_settings(stack).host
    provider = run.by_name("docker-host").inputs
    assert provider["host"] == f"ssh://{host.user}@{host.address}:{host.port}"
    options = json.loads(provider["sshOpts"])
    assert "StrictHostKeyChecking=yes" in options
    known_hosts = Path(next(o for o in options if o.startswith("UserKnownHostsFile=")).partition("=")[2])
    assert known_hosts.is_relative_to(offline_env)
    assert known_hosts.read_text() == f"{host.address} {host.host_key}\n"


def test_known_hosts_names_a_non_default_ssh_port(deploy):
    run = deploy("a10", remote_config("a10", port=2222))
    options = json.loads(run.by_name("docker-host").inputs["sshOpts"])
    known_hosts = Path(next(o for o in options if o.startswith("UserKnownHostsFile=")).partition("=")[2])
    assert known_hosts.read_text() == f"[203.0.113.10]:2222 {HOST_KEY}\n"


@pytest.mark.parametrize("user, host_prep_sudo", [("ubuntu", True), ("root", False)])
def test_sudo_only_for_host_prep_and_only_for_a_non_root_user(deploy, user, host_prep_sudo):
    run = deploy("a10", remote_config("a10", user=user))
    for command in run.of_type(REMOTE_COMMAND):
        # verify reads `docker logs`, which needs root on the host.
        privileged = command.name in HOST_PREP_STEPS or command.name == "verify"
        expected = "sudo -n env " if privileged and host_prep_sudo else "env "
        assert first_line(command).startswith(expected), command.name
        if command.inputs.get("delete"):
            assert command.inputs["delete"].startswith(expected), command.name


def test_local_commands_never_use_sudo(stack_run):
    assert all(first_line(c).startswith("env ") for c in commands(stack_run("local")))


@pytest.mark.parametrize("stack", STACKS)
def test_model_commands_talk_to_the_api_on_the_host(stack, stack_run):
    run = stack_run(stack)
    settings = stack_settings(stack)
    for name in MODEL_STEPS:
        parameters = script_parameters(run.by_name(name).inputs["create"])
        assert parameters["API_URL"] == f"http://127.0.0.1:{settings.server.port}", name
    pull = script_parameters(run.by_name("model-pull").inputs["create"])
    assert json.loads(pull["PULL_REQUEST"])["model"] == settings.model.base
    delete = script_parameters(run.by_name("model-alias").inputs["delete"])
    # Destroying the alias must never remove the base model's blobs.
    assert json.loads(delete["DELETE_REQUEST"]) == {"model": settings.model.alias}


def test_pull_and_warm_get_timeouts_long_enough_for_a_32_gb_model(stack_run):
    run = stack_run("a10")
    # model.pullTimeout (2h) bounds the pull; the warm-up waits for OLLAMA_LOAD_TIMEOUT (15m) + 60 s.
    assert run.by_name("model-pull").custom_timeouts == {"create": "2h", "update": "2h"}
    assert run.by_name("model-warm").custom_timeouts == {"create": "960s", "update": "960s"}
