"""A team's fleet as its users deploy it: the real `pulumi` CLI, one stack listing two fresh-VM
stand-ins (tests/e2e/rig.py), each prepared and given its Ollama server and alias, and LiteLLM's
router on the first, fronting both over the project network (the hosts' private addresses).

Stand-ins, and only these: the VMs are containers (Docker in Docker) without GPUs (profile none:
no NVIDIA steps); the Ollama image is the pinned version built here and the router image the
pinned LiteLLM's PyPI wheels (scripts/dev/router-standin.Dockerfile), both served by a local
registry; the model is a tiny GGUF served by that registry. Tests run in file order, as one
fleet's life: up, load on both hosts, a frozen server healed while requests continue, one host
removed with one `pulumi up`.
"""

import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from ollama_gpu.pins import LITELLM_VERSION, OLLAMA_IMAGE
from tests.e2e import rig
from tests.e2e.checkout import Checkout, fresh_checkout
from tests.integration import harness
from tests.integration.native_server import BASE_MODEL, NativeOllama
from tests.integration.router_load import Outcome, router_load
from tests.integration.tiny_model import write_tiny_gguf

pytestmark = pytest.mark.integration

STACK = "fleet"
ALIAS = "tiny:fleet"
MODEL = "tiny-fleet:base"
MASTER_KEY = "sk-" + "f1ee7" * 8
ROUTER_REPOSITORY = f"berriai/litellm:main-v{LITELLM_VERSION}"
ROUTER_PORT = 4000
CONCURRENCY = 4
ATTEMPT_TIMEOUT_SECONDS = 30
SELF_HEAL_SECONDS = 180
ROUTER_START_SECONDS = 300


@dataclass
class FleetDeployment:
    checkout: Checkout
    vms: dict[str, rig.Vm]
    workdir: Path

    def pulumi(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.checkout.pulumi(*args, "-s", STACK, check=check)

    def on(self, host: str, command: str) -> str:
        result = self.vms[host].ssh(command)
        assert result.returncode == 0, f"{command!r} on {host} failed: {result.stderr}"
        return result.stdout

    @property
    def router_url(self) -> str:
        return f"http://{self.vms['gpu1'].address}:{ROUTER_PORT}/v1"

    def load(self, count: int, on_done=None) -> list[Outcome]:
        return router_load(self.router_url, MASTER_KEY, ALIAS, count, CONCURRENCY, on_done)

    def wait_for_router(self) -> None:
        deadline = time.monotonic() + ROUTER_START_SECONDS
        while True:
            try:
                response = httpx.get(f"{self.router_url}/models", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=5)
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, self.on("gpu1", "docker logs --tail 40 ollama-router 2>&1")
            time.sleep(2)


def _host(name: str, vm: rig.Vm) -> dict:
    return {"name": name, "address": vm.address, "user": vm.user, "hostKey": vm.host_key, "privateAddress": vm.address}


def stack_config(vms: dict[str, rig.Vm], registry: rig.Registry, gguf: Path) -> dict:
    return {
        "config": {
            "ollama-gpu:profile": "none",
            "ollama-gpu:hosts": [_host(name, vm) for name, vm in vms.items()],
            "ollama-gpu:hostPrep": {"dockerRegistryMirror": registry.url},
            "ollama-gpu:server": {
                "selfHeal": {"probeIntervalSeconds": 3, "probeTimeoutSeconds": 2, "failuresBeforeRestart": 2},
                "env": {"loadTimeout": "2m"},
            },
            "ollama-gpu:model": {
                "base": MODEL, "alias": ALIAS, "registry": registry.url, "ggufPath": str(gguf),
                "parameters": {"numCtx": 2048, "numPredict": 16},
            },
            "ollama-gpu:router": {
                "enabled": True, "host": "gpu1", "bindAddress": vms["gpu1"].address, "port": ROUTER_PORT,
                # The VMs reach ghcr.io nowhere here: the same image from the project's registry.
                "image": f"{registry.address}/{ROUTER_REPOSITORY}",
                "timeoutSeconds": ATTEMPT_TIMEOUT_SECONDS, "cooldownSeconds": 5, "healthCheckIntervalSeconds": 5,
            },
        }
    }


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, pulumi_engine, ollama_standin_image: str, native_ollama: NativeOllama):
    workdir = tmp_path_factory.mktemp("fleet")
    router_image = harness.run_dev_script("build-router-image.sh")
    with rig.network(f"{harness.RESOURCE_PREFIX}-fleet") as net, \
            rig.registry(net, f"{harness.RESOURCE_PREFIX}-fleet-registry") as registry:
        rig.push_image(ollama_standin_image, registry, OLLAMA_IMAGE)
        rig.push_image(router_image, registry, ROUTER_REPOSITORY)
        rig.push_model(native_ollama.binary, native_ollama.url, BASE_MODEL, registry, MODEL)
        with rig.vm(net, f"{harness.RESOURCE_PREFIX}-fleet-vm1", workdir / "vm1", host_number=2) as vm1, \
                rig.vm(net, f"{harness.RESOURCE_PREFIX}-fleet-vm2", workdir / "vm2", host_number=5) as vm2, \
                rig.ssh_agent(workdir, vm1.private_key_path) as agent:
            subprocess.run(["ssh-add", "-q", str(vm2.private_key_path)], env={"SSH_AUTH_SOCK": agent}, check=True)
            vms = {"gpu1": vm1, "gpu2": vm2}
            env = pulumi_engine.env(workdir / "state", workdir / "pulumi-home") | {"SSH_AUTH_SOCK": agent}
            (workdir / "state").mkdir()
            checkout = fresh_checkout(workdir / "checkout", env)
            gguf = write_tiny_gguf(workdir / "tiny.gguf")
            (checkout.path / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(stack_config(vms, registry, gguf)))
            checkout.pulumi("stack", "init", STACK)
            checkout.pulumi("config", "set", "--secret", "--path", "router.masterKey", MASTER_KEY, "-s", STACK)
            yield FleetDeployment(checkout, vms, workdir)
            checkout.pulumi("destroy", "--yes", "-s", STACK, check=False)


def _count(outcomes: list[Outcome]) -> dict[str, int]:
    return dict(sorted(Counter(outcome.host or "failed" for outcome in outcomes).items()))


def test_up_prepares_both_hosts_and_starts_the_router(fleet: FleetDeployment):
    up = fleet.pulumi("up", "--yes")
    assert "error" not in up.stderr.lower(), up.stderr
    for host in ("gpu1", "gpu2"):
        assert fleet.on(host, "docker inspect --format '{{.State.Health.Status}}' ollama").strip() == "healthy"
        # A fleet host's server listens on its private address only.
        assert ALIAS in fleet.on(host, f"curl -fsS http://{fleet.vms[host].address}:11434/api/ps")
        assert fleet.vms[host].ssh("curl -fsS http://127.0.0.1:11434/api/ps").returncode != 0
    assert fleet.on("gpu1", "docker inspect --format '{{.State.Running}}' ollama-router").strip() == "true"
    assert fleet.on("gpu2", "docker ps -q --filter name=^ollama-router$").strip() == ""
    fleet.wait_for_router()
    assert fleet.checkout.output("endpoint", STACK) == fleet.router_url
    assert set(fleet.checkout.output("verification", STACK)) == {"gpu1", "gpu2"}
    assert "fleet (2/2 planned)" in fleet.checkout.output("plan_table", STACK)
    state = fleet.pulumi("stack", "export").stdout
    assert MASTER_KEY not in state and MASTER_KEY not in fleet.pulumi("stack", "output", "--json").stdout


def test_a_second_up_changes_nothing(fleet: FleetDeployment):
    fleet.pulumi("preview", "--expect-no-changes")


def test_both_hosts_serve_under_concurrent_load(fleet: FleetDeployment):
    outcomes = fleet.load(24)
    print(f"fleet both up: {_count(outcomes)}")
    assert [o.status for o in outcomes] == [200] * len(outcomes)
    assert _count(outcomes).get("gpu1") and _count(outcomes).get("gpu2")


def test_a_frozen_server_fails_only_requests_in_flight_and_heals_back_into_rotation(fleet: FleetDeployment):
    top = fleet.on("gpu2", "docker top ollama -eo pid,args").splitlines()[1:]
    (pid,) = [line.split(None, 1)[0] for line in top if line.split(None, 1)[1].strip() == "ollama serve"]
    frozen: dict[str, float] = {}

    def freeze_after_some(done: int) -> None:
        if done == 6 and not frozen:
            fleet.on("gpu2", f"sudo kill -STOP {pid}")
            frozen["at"] = time.monotonic()

    outcomes = fleet.load(40, on_done=freeze_after_some)
    at = frozen["at"]
    after = [o for o in outcomes if o.started > at]
    in_flight = [o for o in outcomes if o.started <= at < o.ended]
    failed = [o for o in outcomes if o.status != 200]
    print(f"fleet gpu2 frozen: {_count(outcomes)}; {len(in_flight)} in flight at the freeze, "
          f"{len(after)} started after it, served by {_count(after)}")
    assert after and all(o.status == 200 for o in after), _count(after)
    assert set(failed) <= set(in_flight)

    # The health check kills the frozen server; it restarts and loads the alias by itself.
    deadline = time.monotonic() + SELF_HEAL_SECONDS
    while fleet.on("gpu2", "docker inspect --format '{{.RestartCount}}' ollama").strip() == "0" \
            or fleet.vms["gpu2"].ssh(f"curl -fsS --max-time 3 http://{fleet.vms['gpu2'].address}:11434/api/ps").stdout.count(ALIAS) == 0:
        assert time.monotonic() < deadline, "gpu2's server did not come back with its alias loaded"
        time.sleep(2)
    while True:
        outcomes = fleet.load(16)
        if _count(outcomes).get("gpu2") or time.monotonic() > deadline:
            break
        time.sleep(5)
    print(f"fleet gpu2 healed: {_count(outcomes)}")
    assert all(o.status == 200 for o in outcomes) and _count(outcomes).get("gpu2"), _count(outcomes)


def test_removing_a_host_drains_and_removes_it_with_one_up(fleet: FleetDeployment):
    stack_file = fleet.checkout.path / f"Pulumi.{STACK}.yaml"
    document = yaml.safe_load(stack_file.read_text())
    document["config"]["ollama-gpu:hosts"] = document["config"]["ollama-gpu:hosts"][:1]
    stack_file.write_text(yaml.safe_dump(document))
    up = fleet.pulumi("up", "--yes")
    lines = up.stdout.splitlines()
    router_replaced = max(i for i, line in enumerate(lines) if "router-container" in line and "replaced" in line)
    server_deleted = max(i for i, line in enumerate(lines) if "gpu2-ollama-container" in line and "deleted" in line)
    # The router stops sending to gpu2 before gpu2's server goes.
    assert router_replaced < server_deleted, up.stdout
    assert fleet.on("gpu2", "docker ps -aq --filter name=^ollama$").strip() == ""
    assert "ollama" in fleet.on("gpu2", "docker volume ls --format '{{.Name}}'").split(), "the models volume stays"
    fleet.wait_for_router()
    outcomes = fleet.load(12)
    print(f"fleet gpu2 removed: {_count(outcomes)}")
    assert _count(outcomes) == {"gpu1": 12}
    fleet.pulumi("preview", "--expect-no-changes")
