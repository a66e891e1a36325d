"""Host prep of the a10 stack, run over real SSH on a real Debian host.

The commands are the program's own registered remote.Command texts, sent over the connection
(address, port, user, pinned host key) the program registered. Two things are stand-ins, because
NVIDIA's repository and a GPU are out of reach here: the apt repository is a locally signed one
serving a stand-in `nvidia-container-toolkit` package whose `nvidia-ctk` implements the
subcommands the scripts call, and the host's `systemctl` only records restarts (the host has no
Docker). The GPU check step needs a GPU and is not run.
"""

import json
import tomllib
from typing import Any

import pytest

from ollama_gpu.offline import RecordedResource
from tests.integration import harness
from tests.integration.program_spec import render

pytestmark = pytest.mark.integration

HOST_PREP_STEPS = ["nvidia-apt-repo", "nvidia-toolkit", "docker-nvidia-runtime", "nvidia-cgroup-fix"]
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


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


def run_host_prep(config: dict[str, Any], test_host: harness.SshHost, monkeypatch, tmp_path) -> dict[str, str]:
    monkeypatch.setenv("OLLAMA_GPU_OFFLINE", "1")
    monkeypatch.setenv("OLLAMA_GPU_CACHE", str(tmp_path))
    run = render("a10", config, secret_keys=["sshPrivateKey"])
    outputs = {}
    for step in HOST_PREP_STEPS:
        command = run.by_name(step)
        result = target_of(command, test_host).run(command.inputs["create"])
        assert result.returncode == 0, f"{step} failed: {result.stderr}"
        outputs[step] = result.stdout
    return outputs


def test_host_prep_with_standin_nvidia_repo_is_idempotent_and_restarts_docker_once(
    ssh_host_factory, nvidia_standin_repo, monkeypatch, tmp_path
):
    debian_ssh_host = ssh_host_factory()  # fresh: other tests install packages on the shared one
    config = a10_config(debian_ssh_host, nvidia_standin_repo)
    first = run_host_prep(config, debian_ssh_host, monkeypatch, tmp_path)
    for step, out in first.items():
        assert "ollama-gpu: changed:" in out, f"{step} on a fresh host: {out}"

    toml_before = debian_ssh_host.run("sha256sum /etc/nvidia-container-runtime/config.toml").stdout
    second = run_host_prep(config, debian_ssh_host, monkeypatch, tmp_path)
    for step, out in second.items():
        assert "ollama-gpu: unchanged:" in out and "changed:" not in out.replace("unchanged:", ""), f"{step}: {out}"

    restarts = debian_ssh_host.run("cat /var/log/standin-systemctl.log").stdout.splitlines()
    assert restarts == ["restart docker"], "Docker restarts once, when daemon.json changed, never again"

    installed = debian_ssh_host.run("dpkg-query -W -f='${Version}' nvidia-container-toolkit").stdout
    assert installed == "1.17.8-1"
    daemon = json.loads(debian_ssh_host.run("cat /etc/docker/daemon.json").stdout)
    assert daemon["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"

    config_toml = tomllib.loads(debian_ssh_host.run("cat /etc/nvidia-container-runtime/config.toml").stdout)
    assert config_toml["nvidia-container-cli"]["no-cgroups"] is True
    assert debian_ssh_host.run("sha256sum /etc/nvidia-container-runtime/config.toml").stdout == toml_before

    sources = debian_ssh_host.run("cat /etc/apt/sources.list.d/nvidia-container-toolkit.list").stdout
    assert sources.strip() == (
        f"deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] {nvidia_standin_repo.url}/stable/deb/$(ARCH) /"
    )


def test_host_prep_refuses_a_signing_key_with_another_fingerprint(
    ssh_host_factory, nvidia_standin_repo, monkeypatch, tmp_path
):
    fresh_host = ssh_host_factory()
    monkeypatch.setenv("OLLAMA_GPU_OFFLINE", "1")
    monkeypatch.setenv("OLLAMA_GPU_CACHE", str(tmp_path))
    config = a10_config(fresh_host, nvidia_standin_repo, nvidiaKeyFingerprint="C95B321B61E88C1809C4F759DDCAE044F796ECB0")
    command = render("a10", config, secret_keys=["sshPrivateKey"]).by_name("nvidia-apt-repo")
    result = target_of(command, fresh_host).run(command.inputs["create"])
    assert result.returncode != 0
    assert "hostPrep.nvidiaKeyFingerprint" in result.stderr and nvidia_standin_repo.fingerprint in result.stderr
    assert fresh_host.run("test -e /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg").returncode != 0


def test_commands_refuse_a_host_presenting_another_key(debian_ssh_host, nvidia_standin_repo, monkeypatch, tmp_path):
    """The pinned host key the program registers is what the connection checks."""
    monkeypatch.setenv("OLLAMA_GPU_OFFLINE", "1")
    monkeypatch.setenv("OLLAMA_GPU_CACHE", str(tmp_path))
    impostor_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOUxeLa6QKFJPVPHq5zZ2CVsQy5Wm7Ea2oQLxLzVw1oZ"
    config = a10_config(debian_ssh_host, nvidia_standin_repo)
    config["host"]["hostKey"] = impostor_key
    command = render("a10", config, secret_keys=["sshPrivateKey"]).by_name("nvidia-apt-repo")
    result = target_of(command, debian_ssh_host).run("true")
    assert result.returncode != 0 and "Host key verification failed" in result.stderr
