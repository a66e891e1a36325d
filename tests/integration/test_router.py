"""The fleet's router against real parts: the router container the program registers for a
two-host fleet (LiteLLM 1.106.12 from its PyPI wheels, in the stand-in for the official image, with
the rendered config as its upload) in front of two real servers, each in its own container at its
own address on a project network, as two hosts' private addresses: once with Ollama of the pinned
version, once with the pinned llama-server (its CPU build) run with the argv the program renders.

Under concurrent load both hosts get requests (LiteLLM's `x-litellm-model-id` header names the
host that answered; the servers' own logs agree). One server is frozen (`docker pause`, what a
hung GPU server looks like from outside) while requests run: every request that starts after the
freeze must still succeed, through the other host; only one in flight at that moment may fail.
Unfrozen, the host is back in rotation after the cooldown. The counts are printed for the README.
"""

import json
import re
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ollama_gpu.offline import ProgramRun
from tests.e2e import rig
from tests.integration import gateway_rig, harness
from tests.integration.openai_stream import streamed_chat_chunks
from tests.integration.program_spec import copy_uploads, docker_create_args, render
from tests.integration.router_load import Outcome, router_load
from tests.integration.tiny_model import write_tiny_gguf
from tests.unit.conftest import HOST_KEY

pytestmark = pytest.mark.integration

MASTER_KEY = "sk-" + "r0uter" * 7
TEAM_KEY = "team-member-" + "k3y" * 8
ALIAS = "tiny:router"
BASE = "tiny:base"
HOSTS = ("gpu1", "gpu2")
CONCURRENCY = 4
# Short enough that the frozen host's in-flight requests give up and are retried on the other host
# soon; long enough that a healthy host answers in time on a busy machine (10 s timed some out).
ATTEMPT_TIMEOUT_SECONDS = 30
COOLDOWN_SECONDS = 5
HEALTH_CHECK_SECONDS = 5
ROUTER_START_SECONDS = 240
# Every byte is a token of the tiny model's tokenizer (tiny_model.py): a prompt no health check sends.
LONG_PROMPT_TOKENS = 300
LONG_PROMPT = "zq" * LONG_PROMPT_TOKENS


@dataclass
class Fleet:
    url: str
    servers: dict[str, str]  # host name -> container
    router: str
    engine: str
    program: ProgramRun

    def load(self, count: int, on_done=None) -> list[Outcome]:
        return router_load(self.url, MASTER_KEY, ALIAS, count, CONCURRENCY, on_done)

    def _log(self, host: str) -> list[str]:
        logs = subprocess.run(["docker", "logs", self.servers[host]], capture_output=True, text=True, check=True)
        return (logs.stdout + logs.stderr).splitlines()

    def chats_served(self, host: str) -> int:
        """Chats in the server's own log: Ollama's POST /api/chat request lines (OLLAMA_DEBUG's
        [GIN] lines); llama-server logs no request line, but one "launch_slot_" per completion."""
        if self.engine == "llama-server":
            return sum("launch_slot_" in line for line in self._log(host))
        return sum("[GIN]" in line and '"/api/chat"' in line for line in self._log(host))

    def longest_prompt(self, host: str) -> int:
        """The most prompt tokens of any completion the server ran (OLLAMA_DEBUG's "completion
        request"; llama-server's "prompt eval time = ... / N tokens" timing line)."""
        pattern = (r"prompt eval time = .* / +([0-9]+) tokens" if self.engine == "llama-server"
                   else r'msg="completion request" .*prompt=([0-9]+)')
        counts = [int(m.group(1)) for line in self._log(host) if (m := re.search(pattern, line))]
        return max(counts, default=0)


def _program(addresses: dict[str, str], port: int, suffix: str, engine: str) -> ProgramRun:
    config = {
        "profile": "none",
        "server": {"engine": engine},
        "hosts": [{"name": name, "address": f"{name}.invalid", "hostKey": HOST_KEY, "privateAddress": address}
                  for name, address in addresses.items()],
        "model": {"base": BASE, "alias": ALIAS},
        "router": {
            "enabled": True, "port": port, "masterKey": MASTER_KEY, "containerName": f"{harness.RESOURCE_PREFIX}-router-{suffix}",
            "timeoutSeconds": ATTEMPT_TIMEOUT_SECONDS, "cooldownSeconds": COOLDOWN_SECONDS,
            "healthCheckIntervalSeconds": HEALTH_CHECK_SECONDS,
        },
        # Started only by the gateway test; the router's own container and config do not change with it.
        "gateway": {
            "enabled": True, "port": harness.free_port(), "bindAddress": "127.0.0.1", "apiKeys": [TEAM_KEY],
            "containerName": f"{harness.RESOURCE_PREFIX}-router-gateway-{suffix}",
            "dataVolume": f"{harness.RESOURCE_PREFIX}-router-gateway-data-{suffix}",
        },
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OLLAMA_GPU_OFFLINE", "1")
        patch.setenv("OLLAMA_GPU_NO_REGISTRY", "1")
        patch.setenv("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
        return render("local", config, secret_keys=["router", "gateway"])


def _start_llama_server(net: rig.Network, name: str, address: str, image: str, workdir: Path, argv: list[str]) -> None:
    """llama-server at ADDRESS with the argv the program renders for the host, the tiny model in
    place of the registry's blob, listening where the router expects the host's server."""
    model = argv.index("--model") + 1
    argv = [*argv[:model], "/tmp/tiny.gguf", *argv[model + 1:], "--port", "11434"]
    rig.docker("create", "--name", name, "--label", rig.LABEL, "--network", net.name, "--ip", address, image, *argv)
    rig.docker("cp", str(workdir / "tiny.gguf"), f"{name}:/tmp/tiny.gguf")
    rig.docker("start", name)
    deadline = time.monotonic() + 60
    while not harness.answers_http(f"http://{address}:11434/health"):
        assert time.monotonic() < deadline, rig.docker("logs", name, check=False)
        time.sleep(0.3)


def _start_ollama(net: rig.Network, name: str, address: str, image: str, workdir: Path) -> None:
    """An Ollama server at ADDRESS with the tiny model and the alias made from it, loaded."""
    rig.docker("run", "--detach", "--name", name, "--label", rig.LABEL, "--network", net.name, "--ip", address,
               "-e", "OLLAMA_KEEP_ALIVE=-1", "-e", "OLLAMA_DEBUG=1", image)
    url = f"http://{address}:11434"
    deadline = time.monotonic() + 60
    while not harness.answers_http(f"{url}/api/version"):
        assert time.monotonic() < deadline, rig.docker("logs", name, check=False)
        time.sleep(0.3)
    rig.docker("cp", str(workdir / "tiny.gguf"), f"{name}:/tmp/tiny.gguf")
    rig.docker("exec", name, "bash", "-c", "cd /tmp && echo 'FROM ./tiny.gguf' >Modelfile && ollama create tiny:base -f Modelfile")
    create = {"model": ALIAS, "from": BASE, "parameters": {"num_ctx": 2048, "num_predict": 16}, "stream": False}
    httpx.post(f"{url}/api/create", json=create, timeout=120).raise_for_status()
    httpx.post(f"{url}/api/generate", json={"model": ALIAS, "keep_alive": -1}, timeout=120).raise_for_status()


def _wait_for_router(url: str, container: str) -> None:
    deadline = time.monotonic() + ROUTER_START_SECONDS
    while True:
        try:
            if httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        running = rig.docker("inspect", "--format", "{{.State.Running}}", container, check=False)
        if running != "true" or time.monotonic() > deadline:
            raise RuntimeError(f"the router did not start:\n{rig.docker('logs', container, check=False)}")
        time.sleep(1)


@pytest.fixture(scope="module", params=["ollama", "llama-server"])
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    engine = request.param
    server_image = request.getfixturevalue("ollama_standin_image" if engine == "ollama" else "llama_server_standin_image")
    router_image = harness.run_dev_script("build-router-image.sh")
    workdir = tmp_path_factory.mktemp("router")
    write_tiny_gguf(workdir / "tiny.gguf")
    port, suffix = harness.free_port(), str(harness.free_port())
    servers = {name: f"{harness.RESOURCE_PREFIX}-router-{name}-{suffix}" for name in HOSTS}
    with rig.network(f"{harness.RESOURCE_PREFIX}-router-{suffix}") as net:
        addresses = {name: net.address(2 + index) for index, name in enumerate(HOSTS)}
        run = _program(addresses, port, suffix, engine)
        router = run.by_name("router-container")
        try:
            for name in HOSTS:
                if engine == "ollama":
                    _start_ollama(net, servers[name], addresses[name], server_image, workdir)
                else:
                    argv = run.by_name(f"{name}-llama-server-container").inputs["command"]
                    _start_llama_server(net, servers[name], addresses[name], server_image, workdir, argv)
            rig.docker("create", *docker_create_args(router, router_image))
            copy_uploads(router)
            rig.docker("start", router.inputs["name"])
            url = f"http://127.0.0.1:{port}/v1"
            assert run.outputs["endpoint"] == url
            _wait_for_router(url, router.inputs["name"])
            yield Fleet(url, servers, router.inputs["name"], engine, run)
        finally:
            harness.remove_containers([router.inputs["name"], *servers.values()])


def _report(phase: str, outcomes: list[Outcome]) -> None:
    hosts = Counter(outcome.host or "failed" for outcome in outcomes)
    errors = Counter(f"{o.status} {o.error}" for o in outcomes if o.status != 200)
    print(f"router {phase}: {len(outcomes)} requests, {json.dumps(dict(sorted(hosts.items())))}"
          + "".join(f"\n  {count} x {error}" for error, count in errors.items()))


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    # LiteLLM looks up any key but the master key as a virtual key, and without a database says so.
    ({"Authorization": "Bearer " + "w" * 40}, 400),
    ({"Authorization": "Bearer sk-" + "w" * 40}, 400),
], ids=["missing", "wrong", "wrong-sk"])
def test_a_request_without_the_master_key_is_refused_and_reaches_no_host(fleet: Fleet, headers: dict, status: int) -> None:
    # The router's health checks reach the servers all along; this prompt is far longer than theirs.
    response = httpx.post(f"{fleet.url}/chat/completions", headers=headers, timeout=30,
                          json={"model": ALIAS, "messages": [{"role": "user", "content": LONG_PROMPT}]})
    assert response.status_code == status, response.text
    time.sleep(1)
    assert all(fleet.longest_prompt(host) < LONG_PROMPT_TOKENS for host in HOSTS)


def test_the_long_prompt_is_seen_when_it_is_admitted(fleet: Fleet) -> None:
    """The check above can see a request: with the key, the long prompt reaches a server."""
    response = httpx.post(f"{fleet.url}/chat/completions", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=60,
                          json={"model": ALIAS, "messages": [{"role": "user", "content": LONG_PROMPT}], "max_tokens": 4})
    assert response.status_code == 200, response.text
    assert max(fleet.longest_prompt(host) for host in HOSTS) >= LONG_PROMPT_TOKENS


def test_a_streamed_chat_arrives_in_chunks_through_the_router(fleet: Fleet) -> None:
    with httpx.Client(base_url=fleet.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=60) as client:
        streamed_chat_chunks(client, ALIAS)


def test_both_hosts_serve_under_concurrent_load(fleet: Fleet) -> None:
    before = {host: fleet.chats_served(host) for host in HOSTS}
    outcomes = fleet.load(24)
    _report(f"{fleet.engine}, both hosts up", outcomes)
    assert [o.status for o in outcomes] == [200] * len(outcomes)
    served = Counter(o.host for o in outcomes)
    assert set(served) == set(HOSTS) and all(served[host] > 0 for host in HOSTS), served
    # The servers' own logs agree (health checks add a few requests of their own).
    for host in HOSTS:
        assert fleet.chats_served(host) - before[host] >= served[host]


def test_a_frozen_host_fails_only_requests_in_flight_and_the_rest_go_to_the_other(fleet: Fleet) -> None:
    frozen: dict[str, float] = {}

    def freeze_after_some(done: int) -> None:
        if done == 6 and not frozen:
            rig.docker("pause", fleet.servers["gpu2"])
            frozen["at"] = time.monotonic()

    try:
        outcomes = fleet.load(40, on_done=freeze_after_some)
    finally:
        rig.docker("unpause", fleet.servers["gpu2"], check=False)
    _report(f"{fleet.engine}, gpu2 frozen after 6 answers", outcomes)
    at = frozen["at"]
    after = [o for o in outcomes if o.started > at]
    in_flight = [o for o in outcomes if o.started <= at < o.ended]
    failed = [o for o in outcomes if o.status != 200]
    print(f"router {fleet.engine} frozen: {len(in_flight)} in flight at the freeze, {len(after)} started after it, "
          f"{len(failed)} failed; after the freeze served by {dict(Counter(o.host for o in after))}, "
          f"slowest {max(o.ended - o.started for o in outcomes):.1f}s")
    assert after, "the load ended before the freeze"
    assert all(o.status == 200 for o in after), [o.status for o in after]
    assert {o.host for o in after if o.started > at + ATTEMPT_TIMEOUT_SECONDS * 2} <= {"gpu1"}
    assert set(failed) <= set(in_flight)


def test_the_unfrozen_host_comes_back_into_rotation(fleet: Fleet) -> None:
    # Cooldown over and a health check passed: least-busy spreads the load over both again.
    deadline = time.monotonic() + COOLDOWN_SECONDS + 6 * HEALTH_CHECK_SECONDS
    while True:
        outcomes = fleet.load(16)
        served = Counter(o.host for o in outcomes)
        if served["gpu2"] > 0 or time.monotonic() > deadline:
            break
        time.sleep(HEALTH_CHECK_SECONDS)
    _report(f"{fleet.engine}, gpu2 unfrozen", outcomes)
    assert all(o.status == 200 for o in outcomes)
    assert served["gpu2"] > 0 and served["gpu1"] > 0, served


def test_the_gateway_in_front_of_the_router_admits_team_keys_only(fleet: Fleet, tmp_path: Path) -> None:
    """The gateway the program registers on the router host: HTTPS with the exported root, the
    team's keys in, the master key added upstream, the router's admin API not served."""
    image = harness.run_dev_script("build-gateway-image.sh")
    gateway = fleet.program.by_name("gateway-container").inputs["name"]
    volume = fleet.program.by_name("gateway-data").inputs["name"]
    site = urlsplit(fleet.program.outputs["gateway_url"])
    try:
        (tmp_path / "ca.crt").write_text(gateway_rig.start(fleet.program, image))
        tls = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
        # The certificate is for the router host's address (HOSTS[0].invalid here): dial loopback
        # in its name.
        with httpx.Client(base_url=f"https://127.0.0.1:{site.port}", verify=tls, timeout=60,
                          headers={"Host": site.netloc}) as client:
            def post(path: str, key: str | None) -> httpx.Response:
                for _ in range(100):  # the container may still be binding its port
                    try:
                        return client.post(path, headers={"Authorization": f"Bearer {key}"} if key else {},
                                           extensions={"sni_hostname": site.hostname}, json={
                                               "model": ALIAS, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
                    except httpx.ConnectError:
                        time.sleep(0.1)
                raise AssertionError("the gateway did not answer")

            answered = post("/v1/chat/completions", TEAM_KEY)
            assert answered.status_code == 200, answered.text
            assert answered.headers["x-litellm-model-id"] in HOSTS
            for key in (None, "w" * 40, MASTER_KEY):
                assert post("/v1/chat/completions", key).status_code == 401
            for admin in ("/key/generate", "/user/new", "/model/new", "/chat/completions"):
                refused = post(admin, TEAM_KEY)
                assert (refused.status_code, refused.text) == (404, "not served through the gateway"), admin
    finally:
        harness.remove_containers([gateway])
        subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True, check=False)
