"""The program as its users run it: the real `pulumi` CLI, `preview --diff`, `up`, `destroy`, against
a stand-in for a freshly rented GPU VM reached only over SSH (tests/e2e/rig.py), with a file state
backend and a stack file, nothing else.

Stand-ins, and only these: the VM is a container (Docker in Docker) without a GPU; its NVIDIA driver
(nvidia-smi), the NVIDIA apt repository, nvidia-ctk and the runtime hook are the harness's own; the
Ollama image is the pinned version built here and served by a local registry under its official
name; the llama-server image is the pinned build compiled here for the CPU, served by that registry
under the official image's path at the registry's own address (registry mirrors stand in for Docker
Hub only); the gateway's caddy image is Debian's Caddy of the pinned version, served by that
registry under its official name; the model is a tiny GGUF served by that registry. The GPU check
is not run. Tests run in file order, each step building on the previous one, as one deployment's
life; the engine is switched to llama-server and back, then the team gateway is enabled, a key
revoked, the engine switched to llama-server behind it, and the gateway disabled.
"""

import json
import re
import socket
import ssl
import subprocess
import time
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import ollama
import openai
import pytest
import yaml

from ollama_gpu.pins import CADDY_IMAGE, LLAMA_SERVER_IMAGE, OLLAMA_IMAGE
from tests.e2e import rig
from tests.e2e.checkout import Checkout, fresh_checkout
from tests.integration import harness
from tests.integration.native_server import BASE_MODEL, NativeOllama
from tests.integration.tiny_model import write_tiny_gguf

pytestmark = pytest.mark.integration

STACK = "standin"
ALIAS = "tiny:e2e"
MODEL = "tiny-e2e:base"
# Held by a stand-in unattended-upgrades from the VM's boot: the first `up` must wait, not fail.
APT_LOCK_SECONDS = 75
SELF_HEAL_SECONDS = 180


@dataclass
class Deployment:
    checkout: Checkout
    vm: rig.Vm
    registry: rig.Registry
    blobs_container: str
    workdir: Path
    llama_image: str
    # Everything the CLI printed in this deployment's life, for the tests that look for secrets in it.
    transcript: list[str] = field(default_factory=list)

    def pulumi(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = self.checkout.pulumi(*args, "-s", STACK, check=check)
        self.transcript += [result.stdout, result.stderr]
        return result

    def on_vm(self, command: str) -> str:
        result = self.vm.ssh(command)
        assert result.returncode == 0, f"{command!r} on the VM failed: {result.stderr}"
        return result.stdout

    def api(self, path: str, body: dict | None = None) -> dict:
        data = f" -d {json.dumps(json.dumps(body))}" if body else ""
        return json.loads(self.on_vm(f"curl -fsS http://127.0.0.1:11434{path}{data}"))

    def ssh_commands(self) -> list[str]:
        """Steps the deploy ran on the VM over SSH (the VM's sshd logs every command). Not steps:
        Docker's own connection (`docker system dial-stdio`: the docker provider reading state)
        and the program's login check before each run (`true`, ollama_gpu/preflight.py)."""
        lines = self.vm.root("cat", "/var/log/ssh-commands.log").splitlines()
        return [line for line in lines if "dial-stdio" not in line and line.split(" ", 1)[1] != "true"]

    def blob_downloads(self) -> int:
        log = subprocess.run(["docker", "logs", self.blobs_container], capture_output=True, text=True, check=True)
        # busybox httpd -v logs one "response:CODE" line per request; it serves only blobs.
        return len(re.findall(r"response:2\d\d", log.stdout + log.stderr))

    def model_blob_downloads(self) -> int:
        """The model's blob downloads only: the blob server also hands out the layers of the images
        the VM pulls (llama-server's, at the engine switch), and logs no path. The registry's access
        log has one GET per download, answered by a redirect to the blob server."""
        registry = self.blobs_container.removesuffix("-blobs")
        log = subprocess.run(["docker", "logs", registry], capture_output=True, text=True, check=True)
        name, _, _ = MODEL.partition(":")
        request = rf'"GET /v2/library/{re.escape(name)}/blobs/sha256:[0-9a-f]{{64}} HTTP/[0-9.]+" [23]\d\d'
        return len(re.findall(request, log.stdout + log.stderr))


def stack_config(vm: rig.Vm, registry: rig.Registry, nvidia: harness.AptRepo, gguf: Path) -> dict:
    return {
        "config": {
            "ollama-gpu:profile": "a10",
            "ollama-gpu:host": {"address": vm.address, "user": vm.user, "hostKey": vm.host_key},
            "ollama-gpu:hostPrep": {
                "nvidiaRepoUrl": nvidia.url,
                "nvidiaKeyFingerprint": nvidia.fingerprint,
                # STAND-IN: there is no GPU to list.
                "gpuCheck": False,
                "dockerRegistryMirror": registry.url,
            },
            "ollama-gpu:server": {
                "selfHeal": {"probeIntervalSeconds": 3, "probeTimeoutSeconds": 2, "failuresBeforeRestart": 2},
                "env": {"loadTimeout": "2m"},
            },
            "ollama-gpu:model": {
                "base": MODEL,
                "alias": ALIAS,
                "registry": registry.url,
                "ggufPath": str(gguf),
                "parameters": {"numCtx": 2048, "numPredict": 256},
            },
        }
    }


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, pulumi_engine, ollama_standin_image: str, llama_server_standin_image: str,
               gateway_standin_image: str, native_ollama: NativeOllama):
    workdir = tmp_path_factory.mktemp("e2e")
    engine = pulumi_engine
    with rig.network(f"{harness.RESOURCE_PREFIX}-e2e") as net, \
            rig.registry(net, f"{harness.RESOURCE_PREFIX}-registry") as registry:
        rig.push_image(ollama_standin_image, registry, OLLAMA_IMAGE)
        llama_image = rig.push_registry_image(llama_server_standin_image, registry, LLAMA_SERVER_IMAGE)
        rig.push_image(gateway_standin_image, registry, CADDY_IMAGE)
        rig.push_model(native_ollama.binary, native_ollama.url, BASE_MODEL, registry, MODEL)
        nvidia_root = workdir / "nvidia-repo"
        nvidia_port = harness.free_port()
        nvidia = harness.build_nvidia_standin_repo(nvidia_root, nvidia_port, address=net.gateway)
        with harness.serve_directory(nvidia_root, nvidia_port, workdir / "nvidia-http.log", address=net.gateway), \
                rig.vm(net, f"{harness.RESOURCE_PREFIX}-vm", workdir, apt_lock_seconds=APT_LOCK_SECONDS) as vm, \
                rig.ssh_agent(workdir, vm.private_key_path) as agent:
            env = engine.env(workdir / "state", workdir / "pulumi-home") | {"SSH_AUTH_SOCK": agent}
            # The README's `pulumi login file://...`, not the engine helper's PULUMI_BACKEND_URL.
            del env["PULUMI_BACKEND_URL"]
            checkout = fresh_checkout(workdir / "checkout", env)
            (workdir / "state").mkdir()
            checkout.pulumi("login", (workdir / "state").as_uri())
            gguf = write_tiny_gguf(workdir / "tiny.gguf")
            (checkout.path / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(stack_config(vm, registry, nvidia, gguf)))
            checkout.pulumi("stack", "init", STACK)
            # The key also as a secret, as a CI runner would pass it: it must never show in state or outputs.
            checkout.pulumi("config", "set", "--secret", "sshPrivateKey", "-s", STACK, stdin=vm.private_key_path.read_text())
            yield Deployment(checkout, vm, registry, f"{harness.RESOURCE_PREFIX}-registry-blobs", workdir, llama_image)
            checkout.pulumi("destroy", "--yes", "-s", STACK, check=False)


def changes(preview: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """Resource name → operation, for every step of a `preview --json` that is not `same`."""
    steps = json.loads(preview.stdout).get("steps", [])
    return {step["urn"].rsplit("::", 1)[1]: step["op"] for step in steps if step["op"] != "same"}


def test_preview_diff_shows_the_whole_deployment(deployment: Deployment):
    preview = deployment.pulumi("preview", "--diff")
    for resource in ("host-docker-engine", "host-nvidia-driver", "host-nvidia-toolkit", "ollama-container",
                     "model-pull", "model-alias"):
        assert resource in preview.stdout, f"{resource} missing from the preview"
    assert "to create" in preview.stdout


def test_first_up_prepares_a_bare_vm_and_serves_the_alias(deployment: Deployment):
    assert deployment.vm.ssh("command -v docker").returncode != 0, "the stand-in must start without Docker"
    up = deployment.pulumi("up", "--yes")
    assert "error" not in up.stderr.lower(), up.stderr
    # Docker installed by host prep, usable by the non-root login user (the docker provider's ssh://).
    assert deployment.on_vm("docker info --format '{{.ServerVersion}}'").strip()
    # apt waited for the lock a stand-in unattended-upgrades held at boot instead of failing.
    released = int(deployment.vm.root("stat", "-c", "%Y", "/run/apt-lock-released"))
    installed = deployment.vm.root("grep", "-m1", " install docker.io", "/var/log/dpkg.log")[:19]
    assert datetime.strptime(installed, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp() >= released - 1
    assert "nvidia-container-runtime" in deployment.vm.root("cat", "/etc/docker/daemon.json")
    assert deployment.on_vm("docker inspect --format '{{.State.Health.Status}}' ollama").strip() == "healthy"
    # Pulled from the registry by its name there, and the alias made from it with the stack's parameters.
    names = {model["name"] for model in deployment.api("/api/tags")["models"]}
    assert f"{deployment.registry.address}/library/{MODEL}" in names and f"{ALIAS}" in names
    assert "num_ctx                        2048" in deployment.api("/api/show", {"model": ALIAS})["parameters"]
    assert [model["name"] for model in deployment.api("/api/ps")["models"]] == [ALIAS]
    verification = deployment.checkout.output("verification", STACK)
    assert "checks" in verification, verification


def test_second_up_changes_and_runs_nothing(deployment: Deployment):
    before = len(deployment.ssh_commands())
    up = deployment.pulumi("up", "--yes")
    assert re.search(r"\d+ unchanged", up.stdout) and not re.search(r"\d+ (to )?(create|update|replace|delete)", up.stdout), up.stdout
    assert len(deployment.ssh_commands()) == before, deployment.ssh_commands()[before:]
    deployment.pulumi("preview", "--expect-no-changes")


def test_num_ctx_change_is_one_in_place_update(deployment: Deployment):
    deployment.pulumi("config", "set", "--path", "model.parameters.numCtx", "4096")
    assert changes(deployment.pulumi("preview", "--json")) == {"model-alias": "update"}
    diff = deployment.pulumi("preview", "--diff").stdout
    assert '"num_ctx": 4096' in diff
    deployment.pulumi("up", "--yes")
    assert "num_ctx                        4096" in deployment.api("/api/show", {"model": ALIAS})["parameters"]


def test_server_env_change_replaces_the_container(deployment: Deployment):
    old_id = deployment.on_vm("docker inspect --format '{{.Id}}' ollama").strip()
    deployment.pulumi("config", "set", "--path", "server.env.maxQueue", "256")
    planned = changes(deployment.pulumi("preview", "--json"))
    assert planned["ollama-container"] in ("replace", "delete-replaced", "create-replacement"), planned
    deployment.pulumi("up", "--yes")
    env = deployment.on_vm("docker inspect --format '{{json .Config.Env}}' ollama")
    assert "OLLAMA_MAX_QUEUE=256" in env
    assert deployment.on_vm("docker inspect --format '{{.Id}}' ollama").strip() != old_id
    assert [model["name"] for model in deployment.api("/api/ps")["models"]] == [ALIAS]


def test_state_and_outputs_hold_no_secret_or_local_path(deployment: Deployment):
    state = deployment.pulumi("stack", "export").stdout
    key_body = deployment.vm.private_key_path.read_text().splitlines()[1]
    assert key_body not in state
    assert deployment.checkout.env["SSH_AUTH_SOCK"] not in state
    assert deployment.checkout.env["PULUMI_CONFIG_PASSPHRASE"] not in state
    assert str(deployment.workdir / "checkout") not in state
    outputs = deployment.pulumi("stack", "output", "--json").stdout
    assert key_body not in outputs and "PRIVATE KEY" not in outputs


def test_frozen_server_restarts_and_reloads_the_alias_by_itself(deployment: Deployment):
    # docker top shows the VM's PIDs; serve.sh starts the server as exactly `ollama serve`.
    top = deployment.on_vm("docker top ollama -eo pid,args").splitlines()[1:]
    (pid,) = [line.split(None, 1)[0] for line in top if line.split(None, 1)[1].strip() == "ollama serve"]
    deployment.on_vm(f"sudo kill -STOP {pid}")
    deadline = time.monotonic() + SELF_HEAL_SECONDS
    while True:
        restarted = deployment.on_vm("docker inspect --format '{{.RestartCount}}' ollama").strip() != "0"
        result = deployment.vm.ssh("curl -fsS --max-time 3 http://127.0.0.1:11434/api/ps")
        if restarted and result.returncode == 0 and ALIAS in result.stdout:
            break
        assert time.monotonic() < deadline, "the server did not come back with its alias loaded"
        time.sleep(2)


def test_a_failed_step_ends_the_update_with_its_own_reason(deployment: Deployment):
    """A pull the registry cannot serve: the update stops with the server's reason, in a few lines,
    without the script's text or a traceback of the SDK's shutdown."""
    deployment.pulumi("config", "set", "--path", "model.base", "no-such-model:latest")
    up = deployment.pulumi("up", "--yes", check=False)
    deployment.pulumi("config", "set", "--path", "model.base", MODEL)
    output = up.stdout + up.stderr
    assert up.returncode != 0
    assert "pulling" in output and "no-such-model" in output and "file does not exist" in output, output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    # The script travels on stdin: the error repeats only the short command line.
    assert "api_call()" not in output and "base64" not in output, output
    deployment.pulumi("preview", "--expect-no-changes")


def test_destroy_from_a_fresh_clone_keeps_the_models(deployment: Deployment):
    other = fresh_checkout(deployment.workdir / "second-clone", deployment.checkout.env)
    (other.path / f"Pulumi.{STACK}.yaml").write_text((deployment.checkout.path / f"Pulumi.{STACK}.yaml").read_text())
    other.pulumi("stack", "select", STACK)
    other.pulumi("destroy", "--yes", "-s", STACK)
    assert deployment.on_vm("docker ps -aq --filter name=^ollama$").strip() == ""
    assert "ollama" in deployment.on_vm("docker volume ls --format '{{.Name}}'").split()


def test_up_after_destroy_recreates_everything_without_pulling(deployment: Deployment):
    downloads = deployment.blob_downloads()
    up = deployment.pulumi("up", "--yes")
    assert "already present; not pulling" in up.stdout
    assert deployment.blob_downloads() == downloads
    assert [model["name"] for model in deployment.api("/api/ps")["models"]] == [ALIAS]


# --- The second engine: one config line and one `pulumi up` each way ------------------------------

LLAMA_CONTAINER = "llama-server"


def _containers(deployment: Deployment) -> set[str]:
    return set(deployment.on_vm("docker ps -a --format '{{.Names}}'").split())


def _volume_created(deployment: Deployment, volume: str) -> str:
    return deployment.on_vm(f"docker volume inspect --format '{{{{.CreatedAt}}}}' {volume}").strip()


def _chat(deployment: Deployment, max_seconds: int = 60) -> subprocess.CompletedProcess[str]:
    """One short chat completion with the alias, through llama-server's OpenAI-compatible API."""
    body = json.dumps({"model": ALIAS, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    return deployment.vm.ssh(f"curl -fsS --max-time {max_seconds} http://127.0.0.1:11434/v1/chat/completions "
                             f"-H 'Content-Type: application/json' -d '{body}'")


def test_switching_to_llama_server_is_one_up_that_takes_over_the_port_and_keeps_the_models(deployment: Deployment):
    created, downloads = _volume_created(deployment, "ollama"), deployment.model_blob_downloads()
    assert downloads > 0, "the first up pulled the model: the count must see it"
    deployment.pulumi("config", "set", "--path", "llamaServer.image", deployment.llama_image)
    deployment.pulumi("config", "set", "--path", "server.engine", "llama-server")
    # The Ollama container is taken over (an alias), so it is replaced, the old one deleted first;
    # the volume is in neither engine and does not change.
    assert changes(deployment.pulumi("preview", "--json")) == {
        "ollama": "delete", "ollama-image": "delete", "model": "delete", "model-pull": "delete",
        "llama-server": "create", "llama-server-image": "create", "model-file": "create", "model-file-fetch": "create",
        "llama-server-container": "replace", "llama-server-report": "create",
    }
    up = deployment.pulumi("up", "--yes")
    assert LLAMA_CONTAINER in _containers(deployment) and "ollama" not in _containers(deployment)
    assert deployment.on_vm(f"docker inspect --format '{{{{.State.Health.Status}}}}' {LLAMA_CONTAINER}").strip() == "healthy"
    # The GGUF Ollama pulled is the one llama-server loads: nothing downloaded, the volume is the same.
    assert "already in volume ollama; not fetching" in up.stdout, up.stdout
    assert deployment.model_blob_downloads() == downloads
    assert _volume_created(deployment, "ollama") == created
    answer = json.loads(_chat(deployment).stdout)
    assert answer["model"] == ALIAS and answer["choices"][0]["message"]
    verification = deployment.checkout.output("verification", STACK)
    assert {check["figure"]: check["ok"] for check in verification["checks"]}["context_per_slot"], verification
    deployment.pulumi("preview", "--expect-no-changes")


def test_frozen_llama_server_restarts_and_answers_again_by_itself(deployment: Deployment):
    top = deployment.on_vm(f"docker top {LLAMA_CONTAINER} -eo pid,args").splitlines()[1:]
    (pid,) = [line.split(None, 1)[0] for line in top if line.split(None, 1)[1].startswith("/app/llama-server")]
    deployment.on_vm(f"sudo kill -STOP {pid}")
    deadline = time.monotonic() + SELF_HEAL_SECONDS
    while True:
        restarted = deployment.on_vm(f"docker inspect --format '{{{{.RestartCount}}}}' {LLAMA_CONTAINER}").strip() != "0"
        if restarted and _chat(deployment, max_seconds=5).returncode == 0:
            break
        assert time.monotonic() < deadline, "llama-server did not come back with its model loaded"
        time.sleep(2)


def test_a_new_models_volume_gets_the_gguf_from_the_registry_by_digest(deployment: Deployment):
    downloads = deployment.model_blob_downloads()
    deployment.pulumi("config", "set", "--path", "server.modelsVolume", "models-e2e")
    up = deployment.pulumi("up", "--yes")
    assert "changed: fetched" in up.stdout and "checked against its sha256" in up.stdout, up.stdout
    assert deployment.model_blob_downloads() > downloads
    assert _chat(deployment).returncode == 0


def test_switching_back_to_ollama_finds_the_model_llama_server_fetched(deployment: Deployment):
    downloads = deployment.model_blob_downloads()
    deployment.pulumi("config", "set", "--path", "server.engine", "ollama")
    assert changes(deployment.pulumi("preview", "--json")) == {
        "llama-server": "delete", "llama-server-image": "delete", "model-file": "delete", "model-file-fetch": "delete",
        "ollama": "create", "ollama-image": "create", "model": "create", "model-pull": "create", "model-alias": "create",
        "ollama-container": "replace",
    }
    up = deployment.pulumi("up", "--yes")
    # The volume the fetch step filled is an Ollama model store: no pull, no download.
    assert "already present; not pulling" in up.stdout, up.stdout
    assert deployment.model_blob_downloads() == downloads
    assert "ollama" in _containers(deployment) and LLAMA_CONTAINER not in _containers(deployment)
    assert [model["name"] for model in deployment.api("/api/ps")["models"]] == [ALIAS]


# --- The team gateway: enabled, used, a key revoked, llama-server behind it, disabled; one `up` each ---

GATEWAY_CONTAINER = "ollama-gateway"
GATEWAY_VOLUME = "ollama-gateway-data"
GATEWAY_RESOURCES = ("gateway", "gateway-image", "gateway-data", "gateway-container", "gateway-ca-root")
# One per person, as `openssl rand -hex 32` would make them; set with `config set --secret`.
TEAM_KEYS = ("e2e-team-key-alice-" + "0123456789abcdef" * 2, "e2e-team-key-bob-" + "fedcba9876543210" * 2)
WRONG_KEY = "e2e-team-key-mallory-" + "5" * 32
GATEWAY_START_SECONDS = 60


@dataclass(frozen=True)
class TeamEndpoint:
    """The stack's gateway_url and gateway_ca_root outputs, as a team member's client takes them."""

    url: str
    ca_root: str

    def tls(self) -> ssl.SSLContext:
        # The exported root only, not this machine's trust store.
        return ssl.create_default_context(cadata=self.ca_root)

    def request(self, method: str, path: str, key: str | None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, f"{self.url}{path}", headers=headers, verify=self.tls(), timeout=60, **kwargs)


def _team_endpoint(deployment: Deployment) -> TeamEndpoint:
    endpoint = TeamEndpoint(deployment.checkout.output("gateway_url", STACK), deployment.checkout.output("gateway_ca_root", STACK))
    # `up` ends once the container runs and its CA root is read; Caddy may still be binding the port.
    address = urlsplit(endpoint.url)
    deadline = time.monotonic() + GATEWAY_START_SECONDS
    while True:
        try:
            socket.create_connection((address.hostname, address.port), timeout=2).close()
            return endpoint
        except OSError:
            assert time.monotonic() < deadline, f"nothing listens at {endpoint.url}"
            time.sleep(0.5)


def _openai(endpoint: TeamEndpoint, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{endpoint.url}/v1", api_key=key, max_retries=0,
                         http_client=httpx.Client(verify=endpoint.tls()))


def _streamed_chat(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(
        model=ALIAS, messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=8,
    ))
    assert len(chunks) > 1 and chunks[-1].choices[0].finish_reason is not None


def _container_id(deployment: Deployment, name: str) -> str:
    return deployment.on_vm(f"docker inspect --format '{{{{.Id}}}}' {name}").strip()


def test_enabling_the_gateway_is_one_up_that_creates_only_the_gateway(deployment: Deployment):
    ollama_id = _container_id(deployment, "ollama")
    deployment.pulumi("config", "set", "--path", "gateway.enabled", "true")
    for index, key in enumerate(TEAM_KEYS):
        deployment.pulumi("config", "set", "--secret", "--path", f"gateway.apiKeys[{index}]", key)
    assert changes(deployment.pulumi("preview", "--json")) == {name: "create" for name in GATEWAY_RESOURCES}
    deployment.pulumi("up", "--yes")
    assert _container_id(deployment, "ollama") == ollama_id
    endpoint = _team_endpoint(deployment)
    # The VM's address, where the team reaches it; the certificate is for that address.
    assert endpoint.url == f"https://{deployment.vm.address}:8443"
    assert endpoint.ca_root.startswith("-----BEGIN CERTIFICATE-----"), endpoint.ca_root


def test_the_ollama_and_openai_clients_stream_through_the_gateway_with_a_key_only(deployment: Deployment):
    endpoint = _team_endpoint(deployment)
    native = ollama.Client(host=endpoint.url, headers={"Authorization": f"Bearer {TEAM_KEYS[0]}"}, verify=endpoint.tls())
    assert ALIAS in [model.model for model in native.list().models]
    chunks = list(native.chat(model=ALIAS, messages=[{"role": "user", "content": "hi"}], stream=True,
                              options={"num_predict": 8}))
    assert len(chunks) > 1 and chunks[-1].done
    _streamed_chat(_openai(endpoint, TEAM_KEYS[1]))
    with pytest.raises(openai.AuthenticationError):
        _openai(endpoint, WRONG_KEY).models.list()
    for key in (None, WRONG_KEY):
        assert endpoint.request("GET", "/api/tags", key).status_code == 401
    # A key admits inference, not managing the served model.
    pull = endpoint.request("POST", "/api/pull", TEAM_KEYS[0], json={"model": ALIAS})
    assert (pull.status_code, pull.text) == (404, "not served through the gateway")
    plain = httpx.get(endpoint.url.replace("https://", "http://", 1) + "/api/tags",
                      headers={"Authorization": f"Bearer {TEAM_KEYS[0]}"})
    assert plain.status_code == 400 and "HTTPS" in plain.text, plain.text
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{endpoint.url}/api/version")


def test_revoking_a_key_is_one_up_that_replaces_only_the_gateway_container(deployment: Deployment):
    before = _team_endpoint(deployment)
    ollama_id, gateway_id = _container_id(deployment, "ollama"), _container_id(deployment, GATEWAY_CONTAINER)
    deployment.pulumi("config", "rm", "--path", "gateway.apiKeys[1]")
    assert changes(deployment.pulumi("preview", "--json")) == {"gateway-container": "replace", "gateway-ca-root": "replace"}
    deployment.pulumi("up", "--yes")
    assert _container_id(deployment, "ollama") == ollama_id
    assert _container_id(deployment, GATEWAY_CONTAINER) != gateway_id
    after = _team_endpoint(deployment)
    # The CA lives in the kept volume: clients keep the root they were given.
    assert after == before
    assert after.request("GET", "/api/tags", TEAM_KEYS[1]).status_code == 401
    assert after.request("GET", "/api/tags", TEAM_KEYS[0]).status_code == 200


def test_no_team_key_shows_in_state_outputs_stack_file_or_cli_output(deployment: Deployment):
    state = deployment.pulumi("stack", "export").stdout
    # The Caddyfile (with the key) is in the state, encrypted: the check below is not vacuous.
    (container,) = [r for r in json.loads(state)["deployment"]["resources"] if r["urn"].endswith("::gateway-container")]
    assert "ciphertext" in container["inputs"]["uploads"], container["inputs"]["uploads"]
    outputs = deployment.pulumi("stack", "output", "--json", "--show-secrets").stdout
    stack_file = (deployment.checkout.path / f"Pulumi.{STACK}.yaml").read_text()
    for where, text in (("the state", state), ("the outputs", outputs), ("the stack file", stack_file),
                        ("the CLI's output", "\n".join(deployment.transcript))):
        for key in TEAM_KEYS:
            assert key not in text, f"a team key shows in {where}"


def test_behind_the_gateway_llama_server_serves_its_openai_api_but_not_its_slots(deployment: Deployment):
    """The engine switch with the gateway on: the gateway is replaced for llama-server's paths."""
    before = _team_endpoint(deployment)
    deployment.pulumi("config", "set", "--path", "server.engine", "llama-server")
    planned = changes(deployment.pulumi("preview", "--json"))
    assert {name: op for name, op in planned.items() if name.startswith("gateway")} == {
        "gateway-container": "replace", "gateway-ca-root": "replace"}, planned
    deployment.pulumi("up", "--yes")
    after = _team_endpoint(deployment)
    assert after == before
    _streamed_chat(_openai(after, TEAM_KEYS[0]))
    # /slots shows every slot's prompt: other people's conversations. Ollama's paths are gone too.
    for path in ("/slots", "/api/tags"):
        response = after.request("GET", path, TEAM_KEYS[0])
        assert (response.status_code, response.text) == (404, "not served through the gateway"), path


def test_disabling_the_gateway_is_one_up_that_removes_it_and_keeps_its_ca_volume(deployment: Deployment):
    url, server_id = _team_endpoint(deployment).url, _container_id(deployment, LLAMA_CONTAINER)
    deployment.pulumi("config", "set", "--path", "gateway.enabled", "false")
    assert changes(deployment.pulumi("preview", "--json")) == {name: "delete" for name in GATEWAY_RESOURCES}
    deployment.pulumi("up", "--yes")
    assert GATEWAY_CONTAINER not in _containers(deployment)
    assert GATEWAY_VOLUME in deployment.on_vm("docker volume ls --format '{{.Name}}'").split()
    assert _container_id(deployment, LLAMA_CONTAINER) == server_id
    assert deployment.checkout.output("gateway_url", STACK) == ""
    # Nothing listens there any more (no certificate to verify: the connection itself is refused).
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/version", verify=False)
