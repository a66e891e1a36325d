"""Session fixtures for the real systems the integration tests run against (see harness.py).
Each builds what it needs through scripts/dev/ (cached: reruns are fast) and removes what it
started when the session ends."""

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration import harness


@pytest.fixture(scope="session")
def docker_engine() -> None:
    harness.require(harness.docker_answers(), "no Docker daemon answers (scripts/dev/install-prerequisites.sh sets one up)")


@pytest.fixture(scope="session")
def ollama_standin_image(docker_engine: None) -> str:
    """Tag of the stand-in for the official ollama/ollama image, at the version pinned in pins.env."""
    install_dir = harness.ollama_install_dir(harness.run_dev_script("build-ollama.sh"))
    return harness.run_dev_script("build-ollama-image.sh", str(install_dir))


@pytest.fixture(scope="session")
def llama_server_standin_image(docker_engine: None) -> str:
    """Tag of the stand-in for the official llama.cpp server image, under that image's name
    (ollama_gpu.pins.LLAMA_SERVER_IMAGE), from the CPU build of the pinned llama-server."""
    server_dir = Path(harness.run_dev_script("build-llama-server.sh")).resolve().parent
    return harness.run_dev_script("build-llama-server-image.sh", str(server_dir))


@pytest.fixture(scope="session")
def gateway_standin_image(docker_engine: None) -> str:
    """Tag of the stand-in for the official caddy image the gateway runs, at the version pinned in pins.env."""
    return harness.run_dev_script("build-gateway-image.sh")


@pytest.fixture(scope="session")
def nvidia_standin_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.AptRepo]:
    """The stand-in NVIDIA container-toolkit apt repository, served on a free loopback port."""
    root = tmp_path_factory.mktemp("nvidia-standin-repo")
    port = harness.free_port()
    repo = harness.build_nvidia_standin_repo(root, port)
    with harness.serve_directory(root, port, tmp_path_factory.getbasetemp() / "nvidia-standin-http.log"):
        yield repo


@pytest.fixture(scope="session")
def ssh_host_factory(
    docker_engine: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], harness.SshHost]]:
    """Starts a fresh SSH test host per call, for tests that must not share one's state."""
    harness.require(shutil.which("ssh") is not None, "no ssh client (scripts/dev/install-prerequisites.sh installs one)")
    harness.run_dev_script("build-test-host-image.sh")
    started: list[harness.SshHost] = []

    def start() -> harness.SshHost:
        started.append(harness.start_ssh_host(tmp_path_factory.mktemp("ssh-client")))
        return started[-1]

    yield start
    harness.remove_containers([host.container for host in started])


@pytest.fixture(scope="session")
def debian_ssh_host(ssh_host_factory: Callable[[], harness.SshHost]) -> harness.SshHost:
    """The SSH test host shared by the session."""
    return ssh_host_factory()
