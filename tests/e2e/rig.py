"""The end-to-end rig: a freshly rented GPU VM and the network around it, made on this machine.

- a Docker network of the project's own (10.213.N.0/24; .1 is this machine), on which
- the VM stand-in (.2): sshd on port 22 of its own address, user `ubuntu` with sudo, no Docker
  (scripts/dev/vm-standin.Dockerfile); host prep installs Docker inside it (Docker in Docker);
- a real registry (.3, Debian's docker-registry) with its blob store served from a second address
  (.4), as Ollama's pull requires: it is the VM's Docker Hub mirror (the Ollama image and the
  gateway's caddy image are pushed to it under their official names), the plain registry the VM
  pulls the llama-server image from by the registry's own address (push_registry_image), and its
  Ollama model registry (the tiny model is pushed to it);
- the stand-in NVIDIA apt repository, served from this machine's address on that network.
Everything is named or labelled ollama-gpu-test and removed at the end of the session.
"""

import contextlib
import os
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.integration import harness

LABEL = harness.RESOURCE_PREFIX
START_SECONDS = 60


def docker(*args: str, check: bool = True) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


@dataclass(frozen=True)
class Network:
    name: str
    prefix: str  # "10.213.N"

    def address(self, host: int) -> str:
        return f"{self.prefix}.{host}"

    @property
    def gateway(self) -> str:
        return self.address(1)


@contextlib.contextmanager
def network(name: str) -> Iterator[Network]:
    """A bridge network on a free 10.213.N.0/24 (another session's rig may hold one)."""
    for third in random.sample(range(1, 255), 254):
        prefix = f"10.213.{third}"
        created = subprocess.run(
            ["docker", "network", "create", "--subnet", f"{prefix}.0/24", "--gateway", f"{prefix}.1",
             "--label", LABEL, name], capture_output=True, text=True, check=False,
        )  # fmt: skip
        if created.returncode == 0:
            break
        if "overlap" not in created.stderr:
            raise RuntimeError(f"docker network create failed: {created.stderr.strip()}")
    else:
        raise RuntimeError("no free 10.213.N.0/24 subnet for the e2e network")
    try:
        yield Network(name, prefix)
    finally:
        docker("network", "rm", name, check=False)


def _wait_for(what: str, probe, container: str) -> None:
    deadline = time.monotonic() + START_SECONDS
    while not probe():
        running = docker("inspect", "--format", "{{.State.Running}}", container, check=False)
        if running != "true" or time.monotonic() > deadline:
            logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=False)
            raise RuntimeError(f"{what} did not start:\n{logs.stdout}{logs.stderr}")
        time.sleep(0.3)


@dataclass(frozen=True)
class Registry:
    address: str  # host:port as the VM reaches it
    push_address: str  # host:port on this machine's loopback, where Docker and Ollama push without TLS

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@contextlib.contextmanager
def registry(net: Network, name: str) -> Iterator[Registry]:
    image = harness.run_dev_script("build-registry-image.sh")
    volume = f"{name}-storage"
    docker("volume", "create", "--label", LABEL, volume)
    blobs_address, registry_address = net.address(4), net.address(3)
    port = harness.free_port()
    common = ["run", "--detach", "--label", LABEL, "--network", net.name, "-v", f"{volume}:/var/lib/docker-registry"]
    containers = [f"{name}-blobs", f"{name}"]
    try:
        docker(*common, "--name", containers[0], "--ip", blobs_address, image, "blobs")
        docker(*common, "--name", containers[1], "--ip", registry_address, "-p", f"127.0.0.1:{port}:5000",
               image, "registry", f"http://{blobs_address}:8080/")
        _wait_for("the registry stand-in", lambda: harness.answers_http(f"http://127.0.0.1:{port}/v2/"), containers[1])
        yield Registry(f"{registry_address}:5000", f"127.0.0.1:{port}")
    finally:
        harness.remove_containers(containers)
        docker("volume", "rm", volume, check=False)


def push_image(local_tag: str, reg: Registry, repository: str) -> None:
    """Pushes LOCAL_TAG as REPOSITORY (e.g. ollama/ollama:0.24.0), where a Docker Hub mirror serves it.
    An official image's short name (caddy:2.6.2) is library/caddy:2.6.2 on Docker Hub and its mirrors."""
    pushed = f"{reg.push_address}/{repository if '/' in repository else f'library/{repository}'}"
    docker("tag", local_tag, pushed)
    try:
        docker("push", pushed)
    finally:
        docker("rmi", pushed, check=False)


def push_registry_image(local_tag: str, reg: Registry, official: str) -> str:
    """Pushes LOCAL_TAG for an image whose home is another registry than Docker Hub (e.g.
    ghcr.io/ggml-org/llama.cpp:server-cuda-b11312) under its path there, and returns the name the
    VM pulls it by: the registry stand-in's address and that path. Docker's registry-mirrors stand in
    for docker.io only, so such an image cannot come through the mirror by its official name; the
    stack names it at the stand-in instead, which the VM's engine already trusts over plain HTTP
    (host prep lists an http:// mirror under insecure-registries, scripts/host/docker-engine.sh)."""
    host, _, path = official.partition("/")
    if not path or not ("." in host or ":" in host or host == "localhost"):
        raise ValueError(f"{official} does not name its registry host")
    push_image(local_tag, reg, path)
    return f"{reg.address}/{path}"


def push_model(ollama_binary: Path, server_url: str, local_name: str, reg: Registry, name: str) -> None:
    """Pushes a model from a local Ollama server as library/NAME, as `ollama push` does to any registry."""
    env = {**os.environ, "OLLAMA_HOST": server_url}
    pushed = f"{reg.push_address}/library/{name}"
    for command in (["cp", local_name, pushed], ["push", "--insecure", pushed], ["rm", pushed]):
        subprocess.run([ollama_binary, *command], env=env, check=True, capture_output=True)


@dataclass(frozen=True)
class Vm:
    address: str
    user: str
    private_key_path: Path
    host_key: str
    container: str

    def ssh(self, command: str) -> subprocess.CompletedProcess[str]:
        host = harness.SshHost(self.address, 22, self.user, self.private_key_path, self.host_key, self.container)
        return host.run(command)

    def root(self, *command: str) -> str:
        """Runs a command inside the VM as root, beside its SSH server (for checks, not for the deploy)."""
        return docker("exec", self.container, *command)


@contextlib.contextmanager
def vm(net: Network, name: str, client_dir: Path, apt_lock_seconds: int = 0, host_number: int = 2) -> Iterator[Vm]:
    """A VM stand-in at .HOST_NUMBER of the network (.2 for the first; .3 and .4 are the registry's),
    with its own client key in CLIENT_DIR."""
    image = harness.run_dev_script("build-vm-image.sh")
    client_dir.mkdir(parents=True, exist_ok=True)
    private_key = harness.new_ed25519_key(client_dir)
    address = net.address(host_number)
    try:
        docker(
            "run", "--detach", "--name", name, "--hostname", "gpu-vm", "--label", LABEL,
            "--network", net.name, "--ip", address,
            # Docker in Docker without --privileged, which these machines refuse (e2e-facts.md).
            "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
            "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
            "--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
            "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run", "-v", "/var/lib/docker",
            "-e", f"AUTHORIZED_KEY={Path(f'{private_key}.pub').read_text().strip()}",
            "-e", f"APT_LOCK_SECONDS={apt_lock_seconds}",
            image,
        )  # fmt: skip
        _wait_for("the VM stand-in's sshd", lambda: _ssh_banner(address), name)
        host_key = " ".join(docker("exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()[:2])
        yield Vm(address, "ubuntu", private_key, host_key, name)
    finally:
        # -v: the VM's /var/lib/docker (its nested images and volumes) goes with it.
        subprocess.run(["docker", "rm", "--force", "-v", name], capture_output=True, check=False)


def _ssh_banner(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=2) as connection:
            return connection.recv(8).startswith(b"SSH-2.0-")
    except OSError:
        return False


@contextlib.contextmanager
def ssh_agent(directory: Path, private_key: Path) -> Iterator[str]:
    """An ssh-agent holding PRIVATE_KEY, as an operator or a CI runner has one; yields its socket."""
    socket_path = directory / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(socket_path)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("ssh-agent did not start")
            time.sleep(0.05)
        subprocess.run(["ssh-add", "-q", str(private_key)], env={**os.environ, "SSH_AUTH_SOCK": str(socket_path)},
                       check=True, capture_output=True)
        yield str(socket_path)
    finally:
        agent.terminate()
        agent.wait()
