"""Proves the integration-test harness itself: the SSH test host, the stand-in NVIDIA apt
repository and its nvidia-ctk, and the stand-in Ollama image."""

import json
import re
import subprocess
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from ollama_gpu.pins import OLLAMA_VERSION
from tests.integration import harness

pytestmark = pytest.mark.integration

KEYRING = "/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg"
TOOLKIT_LIST = "/etc/apt/sources.list.d/nvidia-container-toolkit.list"
PINNED_TOOLKIT = "1.17.7-1"
NEWEST_TOOLKIT = "1.17.8-1"
NVIDIA_RUNTIME = {"args": [], "path": "nvidia-container-runtime"}


def as_root(host: harness.SshHost, script: str) -> subprocess.CompletedProcess[str]:
    """Runs SCRIPT the way the host-prep scripts run: `sudo -n bash -s` over SSH, script on stdin."""
    result = host.run("sudo -n bash -s", stdin="set -euo pipefail\n" + script)
    assert result.returncode == 0, result.stderr
    return result


def apt_update_from(source_list: str, *options: str) -> str:
    """apt-get update of SOURCE_LIST alone, so these tests do not depend on the Debian mirror."""
    only_this_list = f"-o Dir::Etc::SourceList={source_list} -o Dir::Etc::SourceParts=- -o APT::Get::List-Cleanup=0"
    return " ".join(["apt-get update -q", only_this_list, *options])


def test_ssh_host_user_has_passwordless_sudo(debian_ssh_host: harness.SshHost) -> None:
    result = debian_ssh_host.run("id -un && sudo -n true && sudo -n id -u")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "ubuntu\n0\n"


def test_ssh_host_key_is_pinned(debian_ssh_host: harness.SshHost, tmp_path: Path) -> None:
    other_host_key = " ".join(harness.new_ed25519_key(tmp_path).with_suffix(".pub").read_text().split()[:2])

    result = replace(debian_ssh_host, host_key=other_host_key).run("true")

    assert debian_ssh_host.host_key.startswith("ssh-ed25519 AAAA")
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def test_ssh_host_accepts_only_the_authorized_key(debian_ssh_host: harness.SshHost, tmp_path: Path) -> None:
    result = replace(debian_ssh_host, private_key_path=harness.new_ed25519_key(tmp_path)).run("true")

    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr  # no password or keyboard-interactive offered


def test_fresh_ssh_host_is_an_unconfigured_docker_host(ssh_host_factory: Callable[[], harness.SshHost]) -> None:
    host = ssh_host_factory()

    assert host.run("test -e /etc/docker/daemon.json").returncode == 1
    assert host.run("command -v docker").returncode == 1
    restarted = as_root(
        host, "systemctl is-active docker\nsystemctl restart docker\ncat /var/log/standin-systemctl.log"
    )
    assert restarted.stdout == "active\nrestart docker\n"
    assert host.run("sudo -n systemctl stop docker").returncode != 0  # unmodelled calls fail loudly


@pytest.fixture(scope="module")
def toolkit_host(
    ssh_host_factory: Callable[[], harness.SshHost], nvidia_standin_repo: harness.AptRepo
) -> harness.SshHost:
    """A fresh host with the stand-in toolkit installed at the pinned version, by NVIDIA's recipe."""
    host = ssh_host_factory()
    as_root(
        host,
        f"""
        curl -fsSL {nvidia_standin_repo.gpgkey_url} | gpg --batch --yes --dearmor -o {KEYRING}
        curl -fsSL {nvidia_standin_repo.list_url} | sed 's#^deb #deb [signed-by={KEYRING}] #' >{TOOLKIT_LIST}
        {apt_update_from(TOOLKIT_LIST)}
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q nvidia-container-toolkit={PINNED_TOOLKIT}
        """,
    )
    return host


def test_toolkit_installs_at_the_pinned_version_from_the_signed_repo(
    toolkit_host: harness.SshHost, nvidia_standin_repo: harness.AptRepo
) -> None:
    keyring = toolkit_host.run(f"gpg --show-keys --with-colons {KEYRING}").stdout
    policy = toolkit_host.run("apt-cache policy nvidia-container-toolkit").stdout
    version = toolkit_host.run("nvidia-ctk --version").stdout
    conffiles = toolkit_host.run("dpkg-query -W -f '${Conffiles}' nvidia-container-toolkit").stdout

    assert re.fullmatch(r"[0-9A-F]{40}", nvidia_standin_repo.fingerprint)
    assert re.findall(r"^fpr:+([0-9A-F]{40}):", keyring, re.MULTILINE) == [nvidia_standin_repo.fingerprint]
    assert f"Installed: {PINNED_TOOLKIT}" in policy
    assert f"Candidate: {NEWEST_TOOLKIT}" in policy
    assert version.splitlines()[0] == f"NVIDIA Container Toolkit CLI version {PINNED_TOOLKIT.removesuffix('-1')}"
    assert "/etc/nvidia-container-runtime/config.toml" in conffiles


def test_toolkit_repo_is_refused_under_another_key(toolkit_host: harness.SshHost) -> None:
    # A list naming Debian's keyring instead, and an empty index directory so that apt cannot fall
    # back on the index it fetched with the right key.
    result = toolkit_host.run(
        "sudo -n bash -s",
        stdin=f"""
        wrong_key_list=$(mktemp --suffix=.list)
        sed 's#{KEYRING}#/usr/share/keyrings/debian-archive-keyring.gpg#' {TOOLKIT_LIST} >"$wrong_key_list"
        {apt_update_from('"$wrong_key_list"', '-o Dir::State::Lists="$(mktemp -d)"')}
        """,
    )

    assert result.returncode != 0
    assert "NO_PUBKEY" in result.stdout + result.stderr
    assert "is not signed" in result.stderr


def test_runtime_configure_twice_yields_identical_daemon_json(toolkit_host: harness.SshHost) -> None:
    as_root(toolkit_host, """printf '{"log-driver": "local"}' >/etc/docker/daemon.json""")
    configure = "nvidia-ctk runtime configure --runtime=docker && cat /etc/docker/daemon.json"

    first = as_root(toolkit_host, configure)
    second = as_root(toolkit_host, configure)

    assert json.loads(first.stdout) == {"log-driver": "local", "runtimes": {"nvidia": NVIDIA_RUNTIME}}
    assert second.stdout == first.stdout
    assert "INFO[0000] Wrote updated config to /etc/docker/daemon.json" in first.stderr


def test_config_set_writes_valid_toml_with_no_cgroups(toolkit_host: harness.SshHost) -> None:
    read_config = "cat /etc/nvidia-container-runtime/config.toml"
    default = tomllib.loads(toolkit_host.run(read_config).stdout)

    as_root(toolkit_host, "nvidia-ctk config --set nvidia-container-cli.no-cgroups=true --in-place")
    changed = tomllib.loads(toolkit_host.run(read_config).stdout)

    assert "no-cgroups" not in default["nvidia-container-cli"]  # only a comment in the default file
    assert changed["nvidia-container-cli"].pop("no-cgroups") is True
    assert changed == default


def test_ollama_standin_image_is_laid_out_like_the_official_one(ollama_standin_image: str) -> None:
    inspect = ["docker", "image", "inspect", "--format", "{{json .Config}}", ollama_standin_image]
    config = json.loads(subprocess.run(inspect, capture_output=True, text=True, check=True).stdout)
    # A closed port makes the client report only its own version.
    version = subprocess.run(
        ["docker", "run", "--rm", "--env", "OLLAMA_HOST=127.0.0.1:9", ollama_standin_image, "--version"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    curl = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "bash", ollama_standin_image, "-c", "command -v curl"],
        capture_output=True, check=False,
    )  # fmt: skip

    assert ollama_standin_image == f"ollama-gpu-test/ollama:{OLLAMA_VERSION}"
    assert config["Entrypoint"] == ["/usr/bin/ollama"]
    assert config["Cmd"] == ["serve"]
    assert "OLLAMA_HOST=0.0.0.0:11434" in config["Env"]
    assert "11434/tcp" in config["ExposedPorts"]
    assert config.get("Healthcheck") is None
    assert f"client version is {OLLAMA_VERSION}" in version.stdout + version.stderr
    assert curl.returncode == 1
