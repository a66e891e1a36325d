"""What each component registers for each stack, under the recording mocks: the container's env,
the alias's Modelfile parameters, the GPU and CPU branches, and how commands reach the host.
Expectations are derived from the validated settings (or written out literally), never from the
program's own rendering helpers."""

import json
import re
import shlex
import subprocess
from typing import Any, Optional

import pytest

from ollama_gpu import knobs
from ollama_gpu.config_loader import load_settings
from ollama_gpu.settings import ModelParameters, Settings
from tests.unit.conftest import (
    AGENT_SOCKET,
    CONTAINER,
    DOCKER_STEP,
    HOST_ADDRESS,
    HOST_KEY,
    HOST_PREP_STEPS,
    LOCAL_COMMAND,
    MODEL_STEPS,
    REMOTE_COMMAND,
    STACKS,
    container_env,
    happens_after,
    local_config,
    remote_config,
    script_parameters,
    ollama_stack_values,
)

pytestmark = pytest.mark.usefixtures("ssh_agent")

GPU_STACKS = ("a10", "v100")
HOST_PREP = "ollama-gpu:index:HostPrep"
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
    return load_settings(stack, ollama_stack_values(stack), agent_socket=AGENT_SOCKET)


def create_request(run) -> dict[str, Any]:
    return json.loads(script_parameters(run.by_name("model-alias").inputs["create"])["CREATE_REQUEST"])


def commands(run) -> list:
    return run.of_type(REMOTE_COMMAND) + run.of_type(LOCAL_COMMAND)


def first_line(resource) -> str:
    return resource.inputs["create"].splitlines()[0]


@pytest.fixture
def stack_run(deploy):
    return lambda stack: deploy(stack, ollama_stack_values(stack))


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


# --- Host prep: Docker on every SSH stack, the NVIDIA steps only for a GPU ----------------------


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_gpu_stacks_get_all_gpus_and_every_host_prep_step_in_order(stack, stack_run):
    run = stack_run(stack)
    (container,) = run.of_type(CONTAINER)
    assert container.inputs["gpus"] == "all"
    assert [r.name for r in commands(run) if r.name.startswith("host-")] == HOST_PREP_STEPS
    assert len(run.of_type(HOST_PREP)) == 1


def test_a_cpu_stack_over_ssh_gets_docker_and_no_nvidia_step(deploy):
    """A rented VM without a GPU still starts with no Docker: host prep installs it, and nothing else."""
    run = deploy("cpu-vm", remote_config("none"))
    (container,) = run.of_type(CONTAINER)
    assert container.inputs.get("gpus") is None
    assert [r.name for r in commands(run) if r.name.startswith("host-")] == [DOCKER_STEP]
    assert happens_after(run, "docker", DOCKER_STEP)


def test_the_local_stack_has_no_gpu_and_no_host_prep(stack_run):
    run = stack_run("local")
    (container,) = run.of_type(CONTAINER)
    assert container.inputs.get("gpus") is None
    assert not run.of_type(HOST_PREP)
    assert sorted(r.name for r in commands(run)) == sorted(MODEL_STEPS)


@pytest.mark.parametrize("user", ["ubuntu", "admin", "root"])
def test_docker_engine_step_gets_the_login_user_and_the_install_settings(deploy, user):
    run = deploy("a10", remote_config("a10", user=user))
    prep = stack_settings("a10").host_prep
    assert script_parameters(run.by_name(DOCKER_STEP).inputs["create"]) == {
        # Docker over ssh:// runs as this user, who must be able to use the socket.
        "DOCKER_USER": user,
        "INSTALL_DOCKER": "1",
        "REGISTRY_MIRROR": "",
        "INSECURE_REGISTRIES": "",
        "APT_LOCK_TIMEOUT_SECONDS": str(prep.apt_lock_timeout_seconds),
    }


def test_docker_install_mirror_and_apt_lock_wait_follow_their_settings(deploy):
    run = deploy("a10", remote_config("a10", {"hostPrep": {
        "installDocker": False, "dockerRegistryMirror": "http://10.0.0.5:5000", "aptLockTimeoutSeconds": 30,
    }}))
    parameters = script_parameters(run.by_name(DOCKER_STEP).inputs["create"])
    assert (parameters["INSTALL_DOCKER"], parameters["REGISTRY_MIRROR"], parameters["APT_LOCK_TIMEOUT_SECONDS"]) == (
        "0", "http://10.0.0.5:5000", "30",
    )


@pytest.mark.parametrize("cgroup_fix, no_cgroups", [(True, "true"), (False, "false")])
def test_the_cgroup_step_always_runs_and_sets_the_value_either_way(deploy, cgroup_fix, no_cgroups):
    """Turning cgroupFix off must undo an earlier `true` on the host, so the step never disappears."""
    run = deploy("a10", remote_config("a10", {"hostPrep": {"cgroupFix": cgroup_fix}}))
    assert script_parameters(run.by_name("host-nvidia-cgroups").inputs["create"]) == {"NO_CGROUPS": no_cgroups}


def test_the_cgroup_fix_is_off_unless_a_stack_turns_it_on(deploy):
    run = deploy("v100", remote_config("v100"))
    assert script_parameters(run.by_name("host-nvidia-cgroups").inputs["create"]) == {"NO_CGROUPS": "false"}


def test_gpu_check_can_be_left_out(deploy):
    run = deploy("a10", remote_config("a10", {"hostPrep": {"gpuCheck": False}}))
    assert "host-gpu-check" not in run.names()
    assert [r.name for r in commands(run) if r.name.startswith("host-")] == HOST_PREP_STEPS[:-1]


@pytest.mark.parametrize("image", [None, "registry.example:5000/mirror/ollama:0.24.0-cuda"])
def test_gpu_check_runs_the_server_image(deploy, image):
    overrides = {"server": {"image": image}} if image else {}
    run = deploy("a10", remote_config("a10", overrides))
    server_image = run.by_name("ollama-image").inputs["name"]
    assert server_image == (image or stack_settings("a10").server.image)
    assert script_parameters(run.by_name("host-gpu-check").inputs["create"]) == {"IMAGE": server_image}


@pytest.mark.parametrize("stack", STACKS)
def test_container_publishes_the_api_on_the_configured_address_and_mounts_the_models(stack, stack_run):
    settings = stack_settings(stack)
    (container,) = stack_run(stack).of_type(CONTAINER)
    assert container.inputs["ports"] == [{"internal": 11434, "external": settings.server.port, "ip": "127.0.0.1"}]
    assert container.inputs["volumes"] == [{"volumeName": settings.server.models_volume, "containerPath": "/root/.ollama"}]
    assert container.inputs["name"] == settings.server.container_name
    assert "labels" not in container.inputs


@pytest.mark.parametrize("stack", STACKS)
def test_the_container_loads_the_alias_at_every_start(stack, stack_run):
    """After a health-check restart or a VM reboot nobody runs `pulumi up`: the container's own
    command must load the alias, or the next request pays the whole load."""
    (container,) = stack_run(stack).of_type(CONTAINER)
    settings = stack_settings(stack)
    entrypoint = container.inputs["entrypoints"]
    assert entrypoint[:2] == ["/bin/bash", "-c"]
    parameters = script_parameters(entrypoint[2])
    assert parameters["WARM_MODEL"] == settings.model.alias
    assert "ollama serve" in entrypoint[2]


@pytest.mark.parametrize("stack", STACKS)
def test_the_container_log_is_rotated(stack, stack_run):
    """OLLAMA_DEBUG logs every request: an unrotated json-file log fills the VM's disk."""
    (container,) = stack_run(stack).of_type(CONTAINER)
    assert container.inputs["logDriver"] == "json-file"
    assert set(container.inputs["logOpts"]) == {"max-size", "max-file"}


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
        # pulumi-command finds the agent through $SSH_AUTH_SOCK where it runs; a stored socket
        # path would be dead on another machine and re-run every step when it differs.
        assert "agentSocketPath" not in connection


def test_local_stack_runs_commands_on_this_machine(stack_run):
    run = stack_run("local")
    assert not run.of_type(REMOTE_COMMAND)
    assert all("connection" not in c.inputs for c in run.of_type(LOCAL_COMMAND))
    assert run.by_name("docker").inputs["host"] == "unix:///var/run/docker.sock"


def _ssh_option(options: list[str], name: str) -> str:
    values = [options[i + 1].partition("=")[2] for i, o in enumerate(options[:-1]) if o == "-o" and options[i + 1].startswith(f"{name}=")]
    assert len(values) == 1, f"{name} in {options}"
    return values[0]


def _known_hosts_lines(options: list[str], looked_up: str) -> str:
    """What ssh reads as known_hosts when it looks up `looked_up`: the output of the configured
    KnownHostsCommand with %H expanded, run as ssh runs it (no shell)."""
    command = _ssh_option(options, "KnownHostsCommand").replace("%H", looked_up)
    result = subprocess.run(shlex.split(command), capture_output=True, text=True, check=True)
    return result.stdout


@pytest.mark.parametrize("address, url", [("2001:db8::10", "ssh://ubuntu@[2001:db8::10]:22"),
                                          ("gpu-vm.example.com", "ssh://ubuntu@gpu-vm.example.com:22")])
def test_docker_host_url_brackets_an_ipv6_address(deploy, address, url):
    """Docker parses the host as a URL: an unbracketed IPv6 literal's colons would read as a port."""
    run = deploy("a10", remote_config("a10", address=address))
    assert run.by_name("docker").inputs["host"] == url


@pytest.mark.parametrize("port, looked_up", [(22, HOST_ADDRESS), (2222, f"[{HOST_ADDRESS}]:2222")])
def test_docker_over_ssh_trusts_exactly_the_pinned_host_key(deploy, port, looked_up, tmp_path):
    run = deploy("a10", remote_config("a10", port=port))
    provider = run.by_name("docker").inputs
    assert provider["host"] == f"ssh://ubuntu@{HOST_ADDRESS}:{port}"
    options = json.loads(provider["sshOpts"])
    assert _ssh_option(options, "StrictHostKeyChecking") == "yes"
    # No known_hosts file of the operator's may vouch for another key.
    assert _ssh_option(options, "UserKnownHostsFile") == "/dev/null"
    assert _ssh_option(options, "GlobalKnownHostsFile") == "/dev/null"
    assert _ssh_option(options, "BatchMode") == "yes"
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(_known_hosts_lines(options, looked_up))
    # ssh-keygen -F looks the name up as ssh does (port form included) and prints the matching key.
    found = subprocess.run(["ssh-keygen", "-F", looked_up, "-f", str(known_hosts)], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert [line.split(None, 1)[1] for line in found.stdout.splitlines() if not line.startswith("#")] == [HOST_KEY]


@pytest.mark.parametrize("stack", GPU_STACKS)
def test_docker_ssh_options_name_no_local_file(stack, stack_run, offline_env):
    """`pulumi destroy` reuses the stored options from any checkout or CI runner: they may name
    only paths every machine has, and the program writes nothing for them to point at."""
    options = json.loads(stack_run(stack).by_name("docker").inputs["sshOpts"])
    paths = {word for option in options for word in re.findall(r"(?:^|[\s=])(/[^\s]*)", option)}
    assert paths == {"/bin/echo", "/dev/null"}
    assert not any(o == "-i" or o.startswith(("IdentityFile=", "IdentityAgent=")) for o in options)
    assert not offline_env.exists() or not any(offline_env.rglob("*"))


@pytest.mark.parametrize("user, privileged_sudo", [("ubuntu", True), ("root", False)])
def test_sudo_only_for_privileged_steps_and_only_for_a_non_root_user(deploy, user, privileged_sudo):
    run = deploy("a10", remote_config("a10", user=user))
    for command in run.of_type(REMOTE_COMMAND):
        # The alias step's report reads `docker logs`, which needs root (or the docker group).
        privileged = command.name in HOST_PREP_STEPS or command.name == "model-alias"
        expected = "sudo -n env " if privileged and privileged_sudo else "env "
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
    assert json.loads(pull["PULL_REQUEST"]) == {"model": settings.model.base, "stream": True}
    delete = script_parameters(run.by_name("model-alias").inputs["delete"])
    # Destroying the alias must never remove the base model's blobs.
    assert json.loads(delete["DELETE_REQUEST"]) == {"model": settings.model.alias}


@pytest.mark.parametrize("registry, pulled, insecure", [
    ("http://10.0.0.5:5000", "10.0.0.5:5000/library/qwen3:30b-a3b-thinking-2507-q8_0", True),
    ("https://models.example/", "models.example/library/qwen3:30b-a3b-thinking-2507-q8_0", False),
])
def test_a_configured_model_registry_is_pulled_from_and_the_alias_built_on_it(deploy, registry, pulled, insecure):
    run = deploy("a10", remote_config("a10", {"model": {"registry": registry}}))
    pull = script_parameters(run.by_name("model-pull").inputs["create"])
    assert pull["PULL_NAME"] == pulled
    assert json.loads(pull["PULL_REQUEST"]) == {"model": pulled, "stream": True, **({"insecure": True} if insecure else {})}
    assert json.loads(pull["SHOW_REQUEST"]) == {"model": pulled}
    assert create_request(run)["from"] == pulled


def test_a_base_with_a_namespace_keeps_it_on_a_registry(deploy):
    config = local_config({"model": {"base": "team/tiny:1b", "registry": "http://10.0.0.5:5000"}})
    run = deploy("local", config)
    assert script_parameters(run.by_name("model-pull").inputs["create"])["PULL_NAME"] == "10.0.0.5:5000/team/tiny:1b"


def test_pull_and_load_wait_long_enough_for_a_32_gb_model(stack_run):
    """The scripts enforce these themselves: Pulumi's customTimeouts stop waiting for a command
    but leave it running on the host."""
    run = stack_run("a10")
    # model.pullTimeout (2h) bounds the pull; loading waits a minute past the server's OLLAMA_LOAD_TIMEOUT
    # (15m), so the server's own reason for a failed load arrives before curl gives up.
    assert script_parameters(run.by_name("model-pull").inputs["create"])["PULL_TIMEOUT_SECONDS"] == "7200"
    assert script_parameters(run.by_name("model-alias").inputs["create"])["LOAD_TIMEOUT_SECONDS"] == "960"
