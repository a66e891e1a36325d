"""The `local` stack's container, alias and self-healing on a real Docker engine and a real Ollama.

Everything executed here comes from the program's own registered resources (program_spec.py);
only the image name differs (a locally built stand-in for ollama/ollama at the pinned version) and
the base model is imported from a tiny GGUF instead of pulled (the pull's failure paths are tested
against registries that refuse or never answer).
Tests run in file order: the later ones kill and recreate the container.
"""

import contextlib
import json
import re
import shlex
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollama_gpu import knobs
from ollama_gpu.config_loader import load_settings
from ollama_gpu.verification import format_table, verify_deployment
from ollama_gpu.pins import OLLAMA_VERSION
from tests.integration import harness
from tests.integration.program_spec import LocalDeployment, render
from tests.integration.tiny_model import write_tiny_gguf

pytestmark = pytest.mark.integration

BASE = "tiny:base"
ALIAS = "tiny:tuned"
PARAMETERS = {
    "numCtx": 4096,
    "numPredict": 256,
    "numKeep": -1,
    "useMmap": False,
    "numBatch": 256,
    "numThread": 2,
    "temperature": 0.7,
    "topK": 20,
    "topP": 0.9,
    "minP": 0.05,
    "repeatPenalty": 1.1,
    "seed": 42,
    "stop": ["<|end|>"],
}
RECOVERY_LIMIT_SECONDS = 90
# When to stop waiting for the tiny alias to load or unload on this shared machine (not a measurement).
MODEL_LOAD_LIMIT_SECONDS = 120


def local_config(port: int, gguf: Path, **model_overrides: Any) -> dict[str, Any]:
    return {
        "profile": "none",
        "server": {
            "port": port,
            "containerName": "ollama-gpu-test-ollama",
            "modelsVolume": "ollama-gpu-test-models",
            "startupTimeoutSeconds": 120,
        },
        "model": {"base": BASE, "alias": ALIAS, "ggufPath": str(gguf), "parameters": {**PARAMETERS, **model_overrides}},
    }


def api(url: str, path: str, body: dict | None = None, method: str | None = None, timeout: float = 120) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, method=method or ("POST" if data else "GET"))
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def parse_parameters(text: str) -> dict[str, list[str]]:
    """/api/show's `parameters` text, one `name value` per line; stop may repeat."""
    parsed: dict[str, list[str]] = {}
    for line in text.splitlines():
        name, _, value = line.strip().partition(" ")
        parsed.setdefault(name, []).append(value.strip().strip('"'))
    return parsed


def server_config_dump(logs: str) -> dict[str, str]:
    """The `server config` line Ollama logs at startup: env="map[KEY:value KEY:value ...]"."""
    match = re.search(r'msg="server config" env="map\[(.*?)\]"\n', logs + "\n")
    assert match, "no server config line in the server log"
    body = match.group(1)
    starts = [m.start() for m in re.finditer(r"OLLAMA_[A-Z_]+:", body)] + [len(body)]
    entries = (body[a:b].strip() for a, b in zip(starts, starts[1:]))
    return dict(entry.split(":", 1) for entry in entries)


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.gguf"
    write_tiny_gguf(path)
    return path


@pytest.fixture(scope="module")
def deployment(ollama_standin_image: str, tiny_gguf: Path):
    port = harness.free_port()
    config = local_config(port, tiny_gguf)
    deployed = LocalDeployment(render("local", config), ollama_standin_image, config)
    deployed.remove_container()
    subprocess.run(["docker", "volume", "rm", "--force", "ollama-gpu-test-models"], capture_output=True, check=False)
    deployed.create()
    # Stand-in for the registry pull: put the base model on the volume the way a pull would.
    subprocess.run(["docker", "cp", str(tiny_gguf), f"{deployed.name}:/root/.ollama/tiny.gguf"], check=True)
    subprocess.run(
        ["docker", "exec", deployed.name, "sh", "-c",
         f"printf 'FROM /root/.ollama/tiny.gguf\\n' > /tmp/Modelfile && ollama create {BASE} -f /tmp/Modelfile"],
        check=True, capture_output=True,
    )  # fmt: skip
    yield deployed
    deployed.remove_container()
    subprocess.run(["docker", "volume", "rm", "--force", "ollama-gpu-test-models"], capture_output=True, check=False)


def url(deployed: LocalDeployment) -> str:
    return f"http://127.0.0.1:{int(deployed.container.inputs['ports'][0]['external'])}"


def test_container_from_program_spec_is_healthy_and_bound_to_loopback(deployment: LocalDeployment):
    state = deployment.inspect()
    assert state["State"]["Health"]["Status"] == "healthy"
    assert api(url(deployment), "/api/version")["version"] == OLLAMA_VERSION

    bindings = state["HostConfig"]["PortBindings"]
    assert list(bindings) == ["11434/tcp"]
    assert [b["HostIp"] for b in bindings["11434/tcp"]] == ["127.0.0.1"]

    env = set(state["Config"]["Env"])
    assert set(deployment.container.inputs["envs"]) <= env
    mounts = {(m["Type"], m.get("Name"), m["Destination"]) for m in state["Mounts"]}
    assert ("volume", "ollama-gpu-test-models", "/root/.ollama") in mounts
    assert state["HostConfig"]["Init"] is True
    assert state["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    # The server runs under the program's serve.sh, with exactly the argv the program registered.
    assert state["Config"]["Entrypoint"] + state["Config"]["Cmd"] == deployment.container.inputs["entrypoints"]
    # First start: no alias yet, so serve.sh loads nothing and never asks a registry for it.
    assert f"ollama-gpu: {ALIAS} does not exist yet; not loading it" in deployment.logs()


def test_container_log_is_rotated(deployment: LocalDeployment):
    log_config = deployment.inspect()["HostConfig"]["LogConfig"]
    assert log_config["Type"] == "json-file"
    assert log_config["Config"] == deployment.container.inputs["logOpts"]
    assert set(log_config["Config"]) == {"max-size", "max-file"}, "both a size cap and a file count bound the log"


def test_every_env_var_the_program_sets_is_in_the_servers_config_dump(deployment: LocalDeployment):
    dump = server_config_dump(deployment.logs())
    program_env = dict(entry.split("=", 1) for entry in deployment.container.inputs["envs"])
    unknown = sorted(set(program_env) - set(dump))
    assert not unknown, f"the server does not read {unknown}"
    # The knob table lists exactly what the pinned server reads: no more, no less.
    assert {name for name in dump if name.startswith("OLLAMA_")} == knobs.SERVER_ENV_VARS
    assert not set(dump) & set(knobs.REMOVED_ENV_VARS)
    # Values as the server understood them (it prints its parsed form).
    assert dump["OLLAMA_KV_CACHE_TYPE"] == program_env["OLLAMA_KV_CACHE_TYPE"]
    assert dump["OLLAMA_FLASH_ATTENTION"] == "true"
    assert dump["OLLAMA_GPU_OVERHEAD"] == program_env["OLLAMA_GPU_OVERHEAD"]
    assert dump["OLLAMA_NUM_PARALLEL"] == program_env["OLLAMA_NUM_PARALLEL"]
    assert dump["OLLAMA_MAX_LOADED_MODELS"] == program_env["OLLAMA_MAX_LOADED_MODELS"]
    assert dump["OLLAMA_LOAD_TIMEOUT"] == "5m0s"
    # keep-alive -1 means "forever": Go prints the largest duration.
    assert dump["OLLAMA_KEEP_ALIVE"].startswith("2562047h")


def test_pull_skips_a_present_base_model_and_alias_carries_every_parameter(deployment: LocalDeployment):
    pull = deployment.run_command("model-pull")
    assert pull.returncode == 0, pull.stderr
    assert "already present; not pulling" in pull.stdout

    created = deployment.run_command("model-alias")
    assert created.returncode == 0, created.stderr
    shown = api(url(deployment), "/api/show", {"model": ALIAS})
    parameters = parse_parameters(shown["parameters"])
    expected = deployment.run.outputs["alias_request"]["parameters"]
    assert set(parameters) == set(expected), "every parameter the program sets must reach the model"
    for name, value in expected.items():
        values = value if isinstance(value, list) else [value]
        assert [float(v) if _numeric(v) else _plain(v) for v in parameters[name]] == [
            float(v) if _numeric(v) else _plain(v) for v in values
        ], name
    assert set(parameters) <= knobs.MODELFILE_PARAMETERS


def _numeric(value: Any) -> bool:
    return not isinstance(value, bool) and re.fullmatch(r"-?\d+(\.\d+)?", str(value)) is not None


def _plain(value: Any) -> str:
    return str(value).lower()


def test_alias_step_loads_the_alias_keeps_it_loaded_and_reports(deployment: LocalDeployment):
    api(url(deployment), "/api/generate", {"model": ALIAS, "keep_alive": 0})  # unload: the step must load it
    deadline = time.monotonic() + MODEL_LOAD_LIMIT_SECONDS
    while ALIAS in loaded_models(deployment):
        assert time.monotonic() < deadline, "the server did not unload the alias"
        time.sleep(0.2)

    created = deployment.run_command("model-alias")
    assert created.returncode == 0, created.stderr
    assert f"ollama-gpu: loaded {ALIAS}" in created.stdout
    sections = [line for line in created.stdout.splitlines() if line.startswith("### ")]
    assert sections == ["### api/ps", "### api/show", "### placement log"]
    loaded = {m["name"]: m for m in api(url(deployment), "/api/ps")["models"]}
    assert ALIAS in loaded
    assert loaded[ALIAS]["context_length"] == PARAMETERS["numCtx"]
    # keep_alive -1 is Go's largest duration: the expiry lands centuries ahead.
    assert int(loaded[ALIAS]["expires_at"][:4]) > time.gmtime().tm_year + 100


def test_changed_parameter_updates_the_alias_and_delete_keeps_the_base(deployment: LocalDeployment):
    port = int(deployment.container.inputs["ports"][0]["external"])
    config = local_config(port, Path(deployment.config["model"]["ggufPath"]), numPredict=128, temperature=0.2)
    changed = LocalDeployment(render("local", config), deployment.image)
    assert changed.run.by_name("model-alias").inputs["create"] != deployment.run.by_name("model-alias").inputs["create"]
    assert changed.container.inputs == deployment.container.inputs, "a parameter change must not touch the container"

    updated = changed.run_command("model-alias")
    assert updated.returncode == 0, updated.stderr
    parameters = parse_parameters(api(url(deployment), "/api/show", {"model": ALIAS})["parameters"])
    assert parameters["num_predict"] == ["128"]
    assert float(parameters["temperature"][0]) == pytest.approx(0.2)

    deleted = changed.run_command("model-alias", key="delete")
    assert deleted.returncode == 0, deleted.stderr
    names = {m["name"] for m in api(url(deployment), "/api/tags")["models"]}
    assert ALIAS not in names and BASE in names
    again = changed.run_command("model-alias", key="delete")
    assert "already gone" in again.stdout, "deleting twice is harmless"
    assert changed.run_command("model-alias").returncode == 0, "put the alias back for the tests below"


def with_registry(deployed: LocalDeployment, registry: str, **model_settings: Any) -> LocalDeployment:
    """The same stack pulling its base from REGISTRY (model.registry): only the model steps differ."""
    config = local_config(int(deployed.container.inputs["ports"][0]["external"]), Path(deployed.config["model"]["ggufPath"]))
    config["model"] |= {"registry": registry, **model_settings}
    changed = LocalDeployment(render("local", config), deployed.image, config)
    assert changed.container.inputs == deployed.container.inputs
    return changed


def server_pull_error(deployed: LocalDeployment, pull_step: LocalDeployment) -> str:
    """What the server itself answers to the pull step's request: the reason the step must show."""
    request = json.loads(_rendered_value(pull_step.run.by_name("model-pull").inputs["create"], "PULL_REQUEST"))
    try:
        answer = api(url(deployed), "/api/pull", {**request, "stream": False}, timeout=60)
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read())
    assert "error" in answer, f"the pull was expected to fail: {answer}"
    return answer["error"]


def _rendered_value(command: str, name: str) -> str:
    """A parameter's value as the command line binds it (an `env` word NAME='...' on a line of its own)."""
    match = re.search(rf"^\s*{name}=(.*?)\s*\\$", command, re.MULTILINE)
    assert match, f"{name} is not bound in the command line"
    (value,) = shlex.split(match.group(1))
    return value


def test_pull_from_an_unreachable_registry_fails_with_the_servers_reason(deployment: LocalDeployment):
    refused = f"http://127.0.0.1:{harness.free_port()}"  # in the container's own network: nothing listens
    changed = with_registry(deployment, refused)
    pull_name = f"{refused.split('://')[1]}/library/{BASE}"
    assert _rendered_value(changed.run.by_name("model-pull").inputs["create"], "PULL_NAME") == pull_name

    pulled = changed.run_command("model-pull")
    assert pulled.returncode != 0, pulled.stdout
    reason = server_pull_error(deployment, changed)
    failure = [line for line in pulled.stderr.splitlines() if line.startswith("ollama-gpu: pulling ")]
    assert failure == [f"ollama-gpu: pulling {pull_name} failed: {reason}"], pulled.stderr
    assert "curl:" not in pulled.stdout + pulled.stderr, "the server's reason, not curl's"


@contextlib.contextmanager
def silent_registry(address: str) -> Iterator[str]:
    """A registry address that accepts connections and never answers: a pull from it hangs."""
    with socket.socket() as listener:
        listener.bind((address, 0))
        listener.listen(16)
        yield f"http://{address}:{listener.getsockname()[1]}"


def test_pull_that_outlasts_its_timeout_is_stopped_by_the_step(deployment: LocalDeployment):
    gateway = deployment.inspect()["NetworkSettings"]["Networks"]["bridge"]["Gateway"]  # this machine, seen from the container
    with silent_registry(gateway) as registry:
        changed = with_registry(deployment, registry, pullTimeout="1s")
        pulled = changed.run_command("model-pull")
    assert pulled.returncode != 0, pulled.stdout
    assert "did not finish within 1s (model.pullTimeout)" in pulled.stderr, pulled.stderr
    # The server had started the pull and was waiting on the registry when the step gave up.
    assert "last status: pulling manifest" in pulled.stderr, pulled.stderr
    assert "curl:" not in pulled.stdout + pulled.stderr


def _deploy_model(deployed: LocalDeployment) -> str:
    """The program's model steps in order, so a test does not rely on earlier tests' state; returns
    the alias step's output, the report the program verifies."""
    outputs = {}
    for step in ("model-pull", "model-alias"):
        result = deployed.run_command(step)
        assert result.returncode == 0, f"{step}: {result.stderr}"
        outputs[step] = result.stdout
    return outputs["model-alias"]


def _verify(deployed: LocalDeployment):
    """Runs the program's model steps and judges the alias step's report the way the program does."""
    report = _deploy_model(deployed)
    settings = load_settings("local", deployed.config)
    return verify_deployment(settings, deployed.run.outputs["plan"], report), report


def test_verification_finds_the_server_as_planned(deployment: LocalDeployment, record_property):
    verification, _ = _verify(deployment)
    print(format_table(verification))
    record_property("verification", json.dumps(verification.to_dict()))
    assert verification is not None and verification.ok, format_table(verification)
    figures = {check.figure for check in verification.checks}
    assert {"context_length", "memory.weights.cpu", "memory.kv_cache.cpu", "layers.offloaded"} <= figures


def test_verification_flags_a_kv_cache_type_the_server_dropped(deployment: LocalDeployment):
    """The field-notes A10 story on a real server: q8_0 requested, flash attention not in effect."""
    deployment.remove_container()
    deployment.create(tampered_env={"OLLAMA_FLASH_ATTENTION": "0"})
    try:
        verification, _ = _verify(deployment)
        print(format_table(verification))
        assert verification is not None and not verification.ok
        text = "\n".join(verification.warnings)
        assert "quantized kv cache requested but flash attention disabled" in text
        assert "memory.kv_cache.cpu" in text
    finally:
        deployment.remove_container()
        deployment.create()
        _deploy_model(deployment)


def _serve_pid(deployed: LocalDeployment) -> int:
    """The host PID of `ollama serve` (PID 1 in the container is docker-init, then serve.sh's bash)."""
    top = subprocess.run(["docker", "top", deployed.name, "-eo", "pid,args"], capture_output=True, text=True, check=True)
    for line in top.stdout.splitlines()[1:]:
        pid, args = line.strip().split(None, 1)
        # serve.sh starts the server by name; docker-init's and bash's command lines hold the script.
        if args == "ollama serve":
            return int(pid)
    raise AssertionError(f"no ollama serve process in {top.stdout}")


def loaded_models(deployed: LocalDeployment) -> set[str]:
    return {m["name"] for m in api(url(deployed), "/api/ps")["models"]}


def container_loads(deployed: LocalDeployment) -> int:
    """How many times serve.sh loaded the alias, over every start of this container (its log spans them)."""
    return deployed.logs().count(f"ollama-gpu: loaded {ALIAS}")


def wait_until_reloaded(deployed: LocalDeployment, loads_before: int) -> float:
    """Seconds until serve.sh has loaded the alias once more and /api/ps lists it; nothing else
    asks for the alias meanwhile (/api/ps loads nothing)."""
    started = time.monotonic()
    while not (container_loads(deployed) > loads_before and _answers(url(deployed)) and ALIAS in loaded_models(deployed)):
        assert time.monotonic() - started < MODEL_LOAD_LIMIT_SECONDS, deployed.logs()[-3000:]
        time.sleep(0.5)
    return time.monotonic() - started


def test_restarted_container_loads_the_alias_by_itself(deployment: LocalDeployment, record_property):
    assert ALIAS in {m["name"] for m in api(url(deployment), "/api/tags")["models"]}, "needs the alias made above"
    started_before = deployment.inspect()["State"]["StartedAt"]
    loads_before = container_loads(deployment)
    subprocess.run(["docker", "restart", deployment.name], check=True, capture_output=True)
    assert deployment.inspect()["State"]["StartedAt"] != started_before, "a new server process"

    reload_seconds = wait_until_reloaded(deployment, loads_before)
    record_property("reload_after_restart_seconds", round(reload_seconds, 1))
    assert container_loads(deployment) == loads_before + 1, "serve.sh loaded it once, at this start"


def _answers(base_url: str) -> bool:
    try:
        api(base_url, "/api/version", timeout=2)
        return True
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return False


def test_frozen_server_is_detected_restarted_and_reloads_the_alias(deployment: LocalDeployment, record_property):
    restarts_before = deployment.inspect()["RestartCount"]
    loads_before = container_loads(deployment)
    subprocess.run(["kill", "-STOP", str(_serve_pid(deployment))], check=True)
    frozen_at = time.monotonic()
    assert not _answers(url(deployment)), "a stopped server cannot answer"

    saw_unhealthy = False
    while not (deployment.inspect()["RestartCount"] > restarts_before and _answers(url(deployment))):
        saw_unhealthy |= deployment.health() == "unhealthy"
        assert time.monotonic() - frozen_at < RECOVERY_LIMIT_SECONDS, deployment.logs()[-3000:]
        time.sleep(0.5)
    recovery = time.monotonic() - frozen_at
    record_property("recovery_seconds", round(recovery, 1))
    print(f"self-healing: API answered again {recovery:.1f}s after SIGSTOP")

    assert deployment.inspect()["RestartCount"] == restarts_before + 1
    names = {m["name"] for m in api(url(deployment), "/api/tags")["models"]}
    assert {BASE, ALIAS} <= names, "models survive the restart"
    assert saw_unhealthy or "killing the unresponsive server" in json.dumps(deployment.inspect()["State"]["Health"])
    # No deploy step runs after a self-heal: the new server loads the alias by itself.
    reload_seconds = wait_until_reloaded(deployment, loads_before)
    record_property("reload_after_self_heal_seconds", round(reload_seconds, 1))
    assert container_loads(deployment) == loads_before + 1


def test_destroy_and_recreate_keeps_models_and_does_not_pull(deployment: LocalDeployment):
    deployment.remove_container()
    volumes = subprocess.run(["docker", "volume", "ls", "-q"], capture_output=True, text=True, check=True).stdout.split()
    assert "ollama-gpu-test-models" in volumes, "destroy keeps the models volume"

    deployment.create()
    pull = deployment.run_command("model-pull")
    assert pull.returncode == 0 and "not pulling" in pull.stdout
    assert deployment.run_command("model-alias").returncode == 0
    answer = api(url(deployment), "/api/generate", {"model": ALIAS, "prompt": "hello", "stream": False,
                                                    "options": {"num_predict": 8}})
    assert answer["done"] is True and answer["eval_count"] > 0
