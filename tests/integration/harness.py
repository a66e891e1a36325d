"""Real systems for the integration tests: the Docker engine, the stand-in Ollama image, an SSH test
host and a stand-in NVIDIA apt repository.

The heavy lifting is done by the scripts in scripts/dev/ (each documents itself); this module runs
them and wraps what they produce. Everything it creates is named or labelled ollama-gpu-test.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEV_SCRIPTS = REPO_ROOT / "scripts" / "dev"
RESOURCE_PREFIX = "ollama-gpu-test"
SERVER_START_SECONDS = 30


def require(ok: bool, reason: str) -> None:
    """Skips the test when a prerequisite is missing; on CI a missing prerequisite is a failure."""
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def run_dev_script(name: str, *args: str) -> str:
    """Runs scripts/dev/NAME and returns the last line of its stdout, where each script reports
    what it made. Its log goes to stderr, which pytest shows when a test fails."""
    result = subprocess.run([DEV_SCRIPTS / name, *args], stdout=subprocess.PIPE, text=True, check=True)
    return result.stdout.splitlines()[-1]


def docker_answers() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, check=False
    ).returncode == 0


def remove_containers(names: list[str]) -> None:
    """Removes the containers in one call: Docker deletes them side by side, and with vfs each
    deletion is a whole root filesystem."""
    if names:
        subprocess.run(["docker", "rm", "--force", *names], capture_output=True, check=False)


def ollama_install_dir(built: str) -> Path:
    """build-ollama.sh reports either the install prefix or the server binary (or a link to it)
    inside PREFIX/bin; the image is built from the prefix."""
    path = Path(built).resolve()
    return path.parent.parent if path.is_file() else path


def free_port() -> int:
    """A loopback port nothing listens on right now (the kernel's choice, so no guessing)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class AptRepo:
    """The stand-in NVIDIA container-toolkit repository, laid out like nvidia.github.io/libnvidia-container."""

    url: str
    fingerprint: str

    @property
    def gpgkey_url(self) -> str:
        return f"{self.url}/gpgkey"

    @property
    def list_url(self) -> str:
        return f"{self.url}/stable/deb/nvidia-container-toolkit.list"


def build_nvidia_standin_repo(root: Path, port: int, address: str = "127.0.0.1") -> AptRepo:
    url = f"http://{address}:{port}"
    return AptRepo(url, run_dev_script("build-nvidia-standin-repo.sh", str(root), url))


def _answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def serve_directory(root: Path, port: int, log_path: Path, address: str = "127.0.0.1") -> Iterator[None]:
    """Serves ROOT over HTTP on ADDRESS:PORT for the duration of the block."""
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", "--bind", address, "--directory", str(root), str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not _answers_http(f"http://{address}:{port}/"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"http.server on port {port} did not start; see {log_path}")
            time.sleep(0.1)
        yield
    finally:
        server.terminate()
        server.wait()


@dataclass(frozen=True)
class SshHost:
    """A Debian host reached over real SSH as a user with passwordless sudo, its host key pinned."""

    address: str
    port: int
    user: str
    private_key_path: Path
    host_key: str  # "ssh-ed25519 AAAA...", as a known_hosts entry carries it
    container: str

    @property
    def private_key(self) -> str:
        return self.private_key_path.read_text()

    @property
    def known_hosts_line(self) -> str:
        host = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        return f"{host} {self.host_key}\n"

    def run(self, command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Runs COMMAND through the remote user's shell; the host must present the pinned key."""
        with tempfile.TemporaryDirectory(prefix=f"{RESOURCE_PREFIX}-ssh-") as scratch:
            known_hosts = Path(scratch) / "known_hosts"
            known_hosts.write_text(self.known_hosts_line)
            ssh = [
                "ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.private_key_path),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
                "-o", "GlobalKnownHostsFile=/dev/null",
                f"{self.user}@{self.address}", command,
            ]  # fmt: skip
            return subprocess.run(ssh, input=stdin, capture_output=True, text=True, check=False)


def new_ed25519_key(directory: Path) -> Path:
    """Makes an unencrypted key pair in DIRECTORY (id_ed25519, id_ed25519.pub); returns the private key."""
    private_key = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", RESOURCE_PREFIX, "-f", str(private_key)], check=True
    )
    return private_key


def start_ssh_host(client_dir: Path) -> SshHost:
    """Starts a fresh SSH test host, authorizing a client key made now in CLIENT_DIR."""
    private_key = new_ed25519_key(client_dir)
    port = free_port()
    container = f"{RESOURCE_PREFIX}-ssh-host-{port}"
    host_key = run_dev_script("start-test-host.sh", container, str(port), f"{private_key}.pub")
    return SshHost("127.0.0.1", port, "ubuntu", private_key, host_key, container)
