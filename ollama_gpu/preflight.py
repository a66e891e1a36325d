"""Checks that fail fast, with a useful message, before anything is registered."""

import os
import socket

from ollama_gpu.errors import HostUnreachable
from ollama_gpu.settings import Settings

OFFLINE_ENV = "OLLAMA_GPU_OFFLINE"


def require_reachable_host(settings: Settings, timeout_seconds: float = 5.0) -> None:
    """An unreachable VM would otherwise surface as a provider dial error after minutes of retries.
    Offline renders (make plan, tests) set OLLAMA_GPU_OFFLINE=1 because they never connect."""
    host = settings.host
    if host is None or os.environ.get(OFFLINE_ENV) == "1":
        return
    try:
        socket.create_connection((host.address, host.port), timeout=timeout_seconds).close()
    except OSError as error:
        raise HostUnreachable(
            f"stack '{settings.stack}': cannot reach ollama-gpu:host.address = {host.address!r} on "
            f"SSH port {host.port} ({error.strerror or error}). Fix: start the VM, allow TCP {host.port} "
            f"from this machine in its firewall/security group, or correct host.address / host.port."
        ) from None
