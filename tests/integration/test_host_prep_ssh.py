"""Host prep of the a10 stack, run over real SSH on a real Debian host.

The commands are the program's own registered remote.Command texts, sent over the connection
(address, port, user, pinned host key) the program registered. Two things are stand-ins, because
NVIDIA's repository and a GPU are out of reach here: the apt repository is a locally signed one
serving a stand-in `nvidia-container-toolkit` package whose `nvidia-ctk` implements the
subcommands the scripts call, and the host's `systemctl` only records restarts (the host has no
Docker). The GPU check step needs a GPU and is not run. host-docker-engine would install docker.io
from Debian's mirror here (the end-to-end tests run it on their VM stand-in): these tests run it
with hostPrep.installDocker false, for its refusal, and run host-nvidia-driver for its refusal,
since the test host has no NVIDIA driver.
"""

import json
import time
import tomllib
from typing import Any

import pytest

from ollama_gpu.offline import ProgramRun, RecordedResource
from tests.integration import harness
from tests.integration.program_spec import render

pytestmark = pytest.mark.integration

HOST_PREP_STEPS = ["host-nvidia-apt-repo", "host-nvidia-toolkit", "host-docker-nvidia-runtime", "host-nvidia-cgroups"]
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
RUNTIME_CONFIG = "/etc/nvidia-container-runtime/config.toml"
DPKG_FRONTEND_LOCK = "/var/lib/dpkg/lock-frontend"
APT_LISTS_LOCK = "/var/lib/apt/lists/lock"
APT_LOCK_HELD_SECONDS = 10
# Another apt, as unattended-upgrades on a fresh VM: apt takes its locks with fcntl (flock(1)
# would not block it). Prints "locked", holds the lock, then prints "released <epoch seconds>".
APT_LOCK_HOLDER = """\
import fcntl, sys, time
with open(sys.argv[1], "w") as lock:
    fcntl.lockf(lock, fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
print("released", time.time(), flush=True)
"""


def a10_config(host: harness.SshHost, repo: harness.AptRepo, **prep: Any) -> dict[str, Any]:
    return {
        "profile": "a10",
        "host": {"address": host.address, "port": host.port, "user": host.user, "hostKey": host.host_key},
        "sshPrivateKey": host.private_key,
        "hostPrep": {
            "nvidiaRepoUrl": repo.url,
            "nvidiaKeyFingerprint": repo.fingerprint,
            "toolkitVersion": "1.17.8-1",
            "cgroupFix": True,
            "gpuCheck": False,
            **prep,
        },
    }


@pytest.fixture
def render_a10(monkeypatch):
    """Renders the a10 stack without the SSH preflight (the tests run each step themselves)."""
    monkeypatch.setenv("OLLAMA_GPU_OFFLINE", "1")

    def render_config(config: dict[str, Any]) -> ProgramRun:
        return render("a10", config, secret_keys=["sshPrivateKey"])

    return render_config


def _connection(command: RecordedResource) -> dict[str, Any]:
    connection = command.inputs["connection"]
    return connection["value"] if connection.get("4dabf18193072939515e22adb298388d") == SECRET_SIG else connection


def target_of(command: RecordedResource, test_host: harness.SshHost) -> harness.SshHost:
    """An SSH target built from what the program registered, using the test's key file."""
    connection = _connection(command)
    return harness.SshHost(
        address=connection["host"], port=int(connection["port"]), user=connection["user"],
        private_key_path=test_host.private_key_path, host_key=connection["hostKey"], container=test_host.container,
    )  # fmt: skip


def run_step(run: ProgramRun, step: str, test_host: harness.SshHost):
    """Runs a registered remote.Command as the provider does: its text, with its `stdin`."""
    command = run.by_name(step)
    return target_of(command, test_host).run(command.inputs["create"], stdin=command.inputs.get("stdin"))


def run_steps(run: ProgramRun, steps: list[str], test_host: harness.SshHost) -> dict[str, str]:
    outputs = {}
    for step in steps:
        result = run_step(run, step, test_host)
        assert result.returncode == 0, f"{step} failed: {result.stderr}"
        outputs[step] = result.stdout
    return outputs


def root_file(host: harness.SshHost, path: str) -> str:
    result = host.run(f"sudo -n cat {path}")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_host_prep_with_standin_nvidia_repo_is_idempotent_and_restarts_docker_once(
    ssh_host_factory, nvidia_standin_repo, render_a10
):
    debian_ssh_host = ssh_host_factory()  # fresh: other tests install packages on the shared one
    run = render_a10(a10_config(debian_ssh_host, nvidia_standin_repo))
    first = run_steps(run, HOST_PREP_STEPS, debian_ssh_host)
    for step, out in first.items():
        assert "ollama-gpu: changed:" in out, f"{step} on a fresh host: {out}"

    toml_before = debian_ssh_host.run(f"sha256sum {RUNTIME_CONFIG}").stdout
    second = run_steps(run, HOST_PREP_STEPS, debian_ssh_host)
    for step, out in second.items():
        assert "ollama-gpu: unchanged:" in out and "changed:" not in out.replace("unchanged:", ""), f"{step}: {out}"

    restarts = debian_ssh_host.run("cat /var/log/standin-systemctl.log").stdout.splitlines()
    assert restarts == ["restart docker"], "Docker restarts once, when daemon.json changed, never again"

    installed = debian_ssh_host.run("dpkg-query -W -f='${Version}' nvidia-container-toolkit").stdout
    assert installed == "1.17.8-1"
    daemon = json.loads(debian_ssh_host.run("cat /etc/docker/daemon.json").stdout)
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"

    config_toml = tomllib.loads(debian_ssh_host.run(f"cat {RUNTIME_CONFIG}").stdout)
    assert config_toml["nvidia-container-cli"]["no-cgroups"] is True
    assert debian_ssh_host.run(f"sha256sum {RUNTIME_CONFIG}").stdout == toml_before

    sources = debian_ssh_host.run("cat /etc/apt/sources.list.d/nvidia-container-toolkit.list").stdout
    assert sources.strip() == (
        f"deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] {nvidia_standin_repo.url}/stable/deb/$(ARCH) /"
    )


def test_host_prep_refuses_a_signing_key_with_another_fingerprint(ssh_host_factory, nvidia_standin_repo, render_a10):
    fresh_host = ssh_host_factory()
    config = a10_config(fresh_host, nvidia_standin_repo, nvidiaKeyFingerprint="C95B321B61E88C1809C4F759DDCAE044F796ECB0")
    result = run_step(render_a10(config), "host-nvidia-apt-repo", fresh_host)
    assert result.returncode != 0
    assert "hostPrep.nvidiaKeyFingerprint" in result.stderr and nvidia_standin_repo.fingerprint in result.stderr
    assert fresh_host.run("test -e /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg").returncode != 0


def test_commands_refuse_a_host_presenting_another_key(debian_ssh_host, nvidia_standin_repo, render_a10):
    """The pinned host key the program registers is what the connection checks."""
    impostor_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUxeLa6QKFJPVPHq5zZ2CVsQy5Wm7Ea2oQLxLzVw1oZ"
    config = a10_config(debian_ssh_host, nvidia_standin_repo)
    config["host"]["hostKey"] = impostor_key
    command = render_a10(config).by_name("host-nvidia-apt-repo")
    result = target_of(command, debian_ssh_host).run("true")
    assert result.returncode != 0 and "Host key verification failed" in result.stderr


def test_cgroup_setting_turned_off_again_restores_the_toolkit_default(ssh_host_factory, nvidia_standin_repo, render_a10):
    host = ssh_host_factory()
    turned_on = render_a10(a10_config(host, nvidia_standin_repo, cgroupFix=True))
    run_steps(turned_on, ["host-nvidia-apt-repo", "host-nvidia-toolkit", "host-nvidia-cgroups"], host)
    assert tomllib.loads(root_file(host, RUNTIME_CONFIG))["nvidia-container-cli"]["no-cgroups"] is True

    turned_off = render_a10(a10_config(host, nvidia_standin_repo, cgroupFix=False))
    off = run_steps(turned_off, ["host-nvidia-cgroups"], host)["host-nvidia-cgroups"]
    assert f"ollama-gpu: changed: {RUNTIME_CONFIG} now has no-cgroups = false" in off
    assert tomllib.loads(root_file(host, RUNTIME_CONFIG))["nvidia-container-cli"]["no-cgroups"] is False

    again = run_steps(turned_off, ["host-nvidia-cgroups"], host)["host-nvidia-cgroups"]
    assert f"ollama-gpu: unchanged: {RUNTIME_CONFIG} already has no-cgroups = false" in again


def test_driver_check_refuses_a_host_without_nvidia_driver_and_names_what_to_install(
    debian_ssh_host, nvidia_standin_repo, render_a10
):
    assert debian_ssh_host.run("command -v nvidia-smi").returncode != 0, "the test host has no NVIDIA driver"
    run = render_a10(a10_config(debian_ssh_host, nvidia_standin_repo))
    result = run_step(run, "host-nvidia-driver", debian_ssh_host)
    assert result.returncode != 0, result.stdout
    assert "this VM has no working NVIDIA driver (nvidia-smi not found)" in result.stderr
    assert "ubuntu-drivers install" in result.stderr and "nvidia-driver-" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "unchanged" not in result.stdout


def test_docker_engine_step_refuses_a_host_without_docker_when_told_not_to_install_it(
    debian_ssh_host, nvidia_standin_repo, render_a10
):
    assert debian_ssh_host.run("command -v docker").returncode != 0, "the test host has no Docker"
    run = render_a10(a10_config(debian_ssh_host, nvidia_standin_repo, installDocker=False))
    result = run_step(run, "host-docker-engine", debian_ssh_host)
    assert result.returncode != 0, result.stdout
    assert "Docker is not installed on this VM and hostPrep.installDocker is false" in result.stderr
    assert "set hostPrep.installDocker: true" in result.stderr
    assert debian_ssh_host.run("command -v docker").returncode != 0, "nothing installed"


def hold_apt_lock(host: harness.SshHost, lock: str, seconds: float) -> None:
    """Holds LOCK as root in the background, the way another apt would; returns once it is held."""
    assert host.run("cat > /tmp/hold-apt-lock.py", stdin=APT_LOCK_HOLDER).returncode == 0
    started = host.run(
        f"sudo -n nohup python3 /tmp/hold-apt-lock.py {lock} {seconds} >/tmp/hold-apt-lock.log 2>&1 </dev/null &"
    )
    assert started.returncode == 0, started.stderr
    waited = host.run("for _ in $(seq 100); do grep -qx locked /tmp/hold-apt-lock.log && exit 0; sleep 0.1; done; exit 1")
    assert waited.returncode == 0, host.run("cat /tmp/hold-apt-lock.log").stdout


def apt_lock_released_at(host: harness.SshHost) -> float:
    waited = host.run("for _ in $(seq 600); do grep -q ^released /tmp/hold-apt-lock.log && break; sleep 0.1; done; "
                      "cat /tmp/hold-apt-lock.log")
    (released,) = [line.split()[1] for line in waited.stdout.splitlines() if line.startswith("released ")]
    return float(released)


# At boot, apt-daily's `apt-get update` holds the package lists' lock, then unattended-upgrades
# holds dpkg's frontend lock; host prep's own update and install each need one of them.
@pytest.mark.parametrize("lock", [DPKG_FRONTEND_LOCK, APT_LISTS_LOCK], ids=["dpkg-frontend", "apt-lists"])
def test_toolkit_install_waits_for_an_apt_lock_another_apt_holds(
    ssh_host_factory, nvidia_standin_repo, render_a10, lock: str
):
    """A freshly booted VM's unattended-upgrades holds apt's locks; host prep must wait, not fail."""
    host = ssh_host_factory()
    run = render_a10(a10_config(host, nvidia_standin_repo))
    run_steps(run, ["host-nvidia-apt-repo"], host)

    hold_apt_lock(host, lock, APT_LOCK_HELD_SECONDS)
    step_started = time.time()
    installed = run_step(run, "host-nvidia-toolkit", host)
    released_at = apt_lock_released_at(host)
    assert installed.returncode == 0, installed.stderr
    assert "ollama-gpu: changed: installed nvidia-container-toolkit=1.17.8-1" in installed.stdout
    # dpkg wrote the package's file list once apt had the lock, which it only got after the release.
    unpacked_at = float(host.run("stat -c %.9Y /var/lib/dpkg/info/nvidia-container-toolkit.list").stdout)
    print(f"{lock}: held for {released_at - step_started:.1f}s of the step; unpacked {unpacked_at - released_at:.1f}s after")
    assert unpacked_at >= released_at, "the install ran while another apt held the lock"
