"""Shared ground for the unit tests.

test_config_*.py check the typed config with no Pulumi at all; test_program_*.py run __main__.py
under the recording mocks of ollama_gpu.offline and look at what it registered. The helpers here
read those recordings the way the engine would: dependencies through parents, script parameters
out of rendered command text, secrets by Pulumi's wire marker.
"""

import base64
import http.server
import os
import shlex
import textwrap
import threading
from pathlib import Path
from typing import Any, Optional

import pulumi
import pytest
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings

from components.validation import Refused
from ollama_gpu import offline
from ollama_gpu.config_loader import values_from_stack_file
from ollama_gpu.offline import ProgramRun, RecordedResource, run_program

REPO = Path(__file__).resolve().parents[2]
STACKS = ("a10", "v100", "local")

# A public key of the right shape: host keys are not secrets, and nothing connects to it.
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9sbGFtYS1ncHUgdW5pdCB0ZXN0IGhvc3Qga2V5ISEh"
HOST_ADDRESS = "203.0.113.10"
# Stands in for the operator's $SSH_AUTH_SOCK: the committed remote stacks name no identity.
AGENT_SOCKET = "/run/ollama-gpu-test/agent.sock"

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
REMOTE_COMMAND = "command:remote:Command"
LOCAL_COMMAND = "command:local:Command"
# Host prep's steps in the order they run; every SSH stack gets the first, GPU stacks the rest.
DOCKER_STEP = "host-docker-engine"
NVIDIA_STEPS = [
    "host-nvidia-driver", "host-nvidia-apt-repo", "host-nvidia-toolkit", "host-docker-nvidia-runtime",
    "host-nvidia-cgroups", "host-gpu-check",
]
HOST_PREP_STEPS = [DOCKER_STEP, *NVIDIA_STEPS]
MODEL_STEPS = ["model-pull", "model-alias"]


def stack_values(stack: str) -> dict[str, Any]:
    return values_from_stack_file(REPO / f"Pulumi.{stack}.yaml")


def ollama_stack_values(stack: str) -> dict[str, Any]:
    """A stack file's values on the Ollama engine: the a10 and v100 stacks run llama-server, and the
    tests of the Ollama path still start from the recipe's own stacks."""
    values = stack_values(stack)
    return {**values, "server": {**values.get("server", {}), "engine": "ollama"}}


def with_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` laid over it section by section (a test's own merge, so the
    inputs of a test do not depend on the profile merge under test)."""
    result = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = with_overrides(result[key], value)
        else:
            result[key] = value
    return result


def remote_config(profile: str, overrides: Optional[dict[str, Any]] = None, **host: Any) -> dict[str, Any]:
    """A valid SSH stack's config: agent-based unless the caller adds sshPrivateKey."""
    base = {
        "profile": profile,
        "host": {
            "address": HOST_ADDRESS,
            "user": "ubuntu",
            "hostKey": HOST_KEY,
            **host,
        },
    }
    return with_overrides(base, overrides or {})


def local_config(overrides: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    return with_overrides({"profile": "none"}, overrides or {})


@pytest.fixture(scope="session")
def private_key() -> str:
    """A made-up key, new every session: its body lines are what the secret tests look for."""
    body = base64.b64encode(os.urandom(120)).decode()
    return "\n".join(
        ["-----BEGIN OPENSSH PRIVATE KEY-----", *textwrap.wrap(body, 70), "-----END OPENSSH PRIVATE KEY-----"]
    )


@pytest.fixture(autouse=True)
def no_registry(monkeypatch) -> None:
    """Unit tests never reach a model registry: the planner uses its catalog (registry tests serve
    their own registry in-process and clear this)."""
    monkeypatch.setenv("OLLAMA_GPU_NO_REGISTRY", "1")


@pytest.fixture
def offline_env(monkeypatch, tmp_path) -> Path:
    """No SSH preflight, a per-test cache directory (so a test can prove nothing is written there),
    and the identity is whatever the test configures, never the agent of whoever runs the tests."""
    cache = tmp_path / "cache"
    _record_providers(monkeypatch)
    monkeypatch.setenv("OLLAMA_GPU_OFFLINE", "1")
    monkeypatch.setenv("OLLAMA_GPU_CACHE", str(cache))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return cache


def _record_providers(monkeypatch) -> None:
    """Also record which provider each resource uses (as `run.providers`, URN to provider URN):
    the engine creates a resource only after its provider, and a provider after its depends_on."""
    register = offline._RecordingMonitor.RegisterResource

    def recording(self, request):
        response = register(self, request)
        if request.provider:
            providers = self.run.__dict__.setdefault("providers", {})
            # A provider reference is "<urn>::<id>".
            providers[response.urn] = request.provider.rsplit("::", 1)[0]
        return response

    monkeypatch.setattr(offline._RecordingMonitor, "RegisterResource", recording)


@pytest.fixture
def ssh_agent(offline_env, monkeypatch) -> str:
    monkeypatch.setenv("SSH_AUTH_SOCK", AGENT_SOCKET)
    return AGENT_SOCKET


@pytest.fixture
def api_answering():
    """A stand-in for the Ollama API whose DELETE /api/delete answers with a chosen status; the
    (path, body) of each request it gets lands in `start.received`."""
    servers = []

    def start(status: int) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_DELETE(self):
                start.received.append((self.path, self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()))
                self.send_response(status if self.path == "/api/delete" else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll: shutdown() waits for it.
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    start.received = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def deploy(offline_env):
    """run_program, with the offline environment in place."""
    return run_program


@pytest.fixture
def reject(offline_env):
    """Runs a program whose config must be refused; returns the message after checking that not
    a single resource reached the engine (the mock monitor run_program installed keeps count)."""

    def run(stack: str, config: dict[str, Any], secret_keys: Optional[list[str]] = None) -> str:
        with pytest.raises(Refused) as refused:
            run_program(stack, config, secret_keys=secret_keys)
        monitor = runtime_settings.SETTINGS.monitor
        assert monitor.get_registered_resources() == {}, "resources were registered despite invalid config"
        assert monitor.run.resources == []
        return str(refused.value)

    return run


def registered_id(resource: RecordedResource) -> str:
    """The id the mock engine gave a resource."""
    return runtime_settings.SETTINGS.monitor.get_registered_resources()[resource.urn].id


def predecessors(run: ProgramRun, resource: RecordedResource) -> set[str]:
    """URNs that must exist before `resource` is created: its depends_on, its parent (whose
    depends_on holds back every child), its provider, and theirs, transitively."""
    by_urn = {r.urn: r for r in run.resources}
    providers = getattr(run, "providers", {})
    seen: set[str] = set()
    pending = [resource.urn]
    while pending:
        current = by_urn.get(pending.pop())
        if current is None:
            continue
        for urn in [current.parent, *current.depends_on, providers.get(current.urn)]:
            if urn and urn not in seen:
                seen.add(urn)
                pending.append(urn)
    return seen


def happens_after(run: ProgramRun, later: str, earlier: str) -> bool:
    return run.by_name(earlier).urn in predecessors(run, run.by_name(later))


def script_parameters(command: str) -> dict[str, str]:
    """The NAME=value words script_command hands to `env` ahead of `bash -c`, or the assignments
    render_script binds after a script's shebang (a container entrypoint), read back with shell
    quoting rules."""
    if command.startswith("#!"):
        assignments = []
        for line in command.splitlines()[1:]:
            words = shlex.split(line) if line[:1].isupper() and "=" in line else []
            if len(words) != 1:
                break
            assignments.append(words[0])
    else:
        words = shlex.split(command.replace("\\\n", " "))
        assignments = words[words.index("env") + 1:words.index("bash")]
    return dict(word.partition("=")[::2] for word in assignments)


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def without_secrets(value: Any) -> Any:
    """Recorded inputs with every secret-marked value replaced, as any display must show them."""
    if is_secret(value):
        return "[secret]"
    if isinstance(value, dict):
        return {key: without_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_secrets(item) for item in value]
    return value


def container_env(run: ProgramRun) -> dict[str, str]:
    (container,) = run.of_type(CONTAINER)
    entries = container.inputs["envs"]
    env = dict(entry.split("=", 1) for entry in entries)
    assert len(env) == len(entries), f"duplicate variables in {entries}"
    return env
