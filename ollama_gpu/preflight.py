"""Checks that fail fast, with a useful message, before anything is registered."""

import os
import socket
import subprocess

from ollama_gpu.docker_ssh import docker_ssh_options
from ollama_gpu.errors import HostUnreachable
from ollama_gpu.settings import Settings

OFFLINE_ENV = "OLLAMA_GPU_OFFLINE"
SSH_PROBE_SECONDS = 30


def require_reachable_host(settings: Settings, timeout_seconds: float = 5.0, key: str = "host") -> None:
    """An unreachable VM would otherwise surface as a provider dial error after minutes of retries,
    and a Docker connection that cannot log in as a bare "exit status 255" from the docker provider.
    Offline renders (make plan, tests) set OLLAMA_GPU_OFFLINE=1 because they never connect.
    `key` is where the stack sets this host: `host`, or `hosts[N]` for a fleet's."""
    host = settings.host
    if host is None or os.environ.get(OFFLINE_ENV) == "1":
        return
    try:
        socket.create_connection((host.address, host.port), timeout=timeout_seconds).close()
    except OSError as error:
        raise HostUnreachable(
            f"stack '{settings.stack}': cannot reach ollama-gpu:{key}.address = {host.address!r} on "
            f"SSH port {host.port} ({error.strerror or error}). Fix: start the VM, allow TCP {host.port} "
            f"from this machine in its firewall/security group, or correct {key}.address / {key}.port."
        ) from None
    _require_docker_login(settings, key)


def _require_docker_login(settings: Settings, key: str) -> None:
    """The docker provider logs in with plain `ssh` and these options: prove that works first."""
    host = settings.host
    assert host is not None
    probe = ["ssh", *docker_ssh_options(host), "-p", str(host.port), "--", f"{host.user}@{host.address}", "true"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=SSH_PROBE_SECONDS, check=False)
    except FileNotFoundError:
        raise HostUnreachable(
            f"stack '{settings.stack}': no `ssh` client on this machine; the Docker connection to "
            f"ollama-gpu:{key}.address needs one. Fix: install OpenSSH 8.5 or newer."
        ) from None
    except subprocess.TimeoutExpired:
        raise HostUnreachable(
            f"stack '{settings.stack}': ssh to {host.user}@{host.address}:{host.port} did not finish within "
            f"{SSH_PROBE_SECONDS}s. Fix: check that sshd answers on ollama-gpu:{key}.port."
        ) from None
    if result.returncode == 0:
        return
    reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit status {result.returncode}"
    if "Host key verification failed" in result.stderr or "REMOTE HOST IDENTIFICATION" in result.stderr:
        fix = (f"the VM presents another host key than ollama-gpu:{key}.hostKey; compare it with "
               f"`ssh-keyscan -t ed25519 {host.address}` run from a network you trust")
    elif "Permission denied" in result.stderr:
        fix = (f"the Docker connection logs in as `ssh` does, with your ssh-agent or ~/.ssh keys: "
               f"`ssh-add` the key of {host.user}@{host.address} (a sshPrivateKey secret alone serves "
               f"only the host commands)")
    elif "Bad configuration option" in result.stderr or "KnownHostsCommand" in result.stderr:
        fix = "install OpenSSH 8.5 or newer on this machine (the Docker connection pins the host key with KnownHostsCommand)"
    else:
        fix = f"check ollama-gpu:{key}.user, {key}.address and {key}.port, and that sshd accepts your key"
    raise HostUnreachable(
        f"stack '{settings.stack}': ssh to {host.user}@{host.address}:{host.port} failed ({reason}). Fix: {fix}."
    )
