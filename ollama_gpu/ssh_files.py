"""Files the Docker provider's `ssh` needs: the pinned host key and, when the key is a Pulumi
secret rather than an ssh-agent, the key itself (mode 0600, in the git-ignored cache)."""

import os
from pathlib import Path

from ollama_gpu.config_loader import SECRET_PLACEHOLDER
from ollama_gpu.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def ssh_dir(stack: str) -> Path:
    root = Path(os.environ.get("OLLAMA_GPU_CACHE", REPO / ".cache"))
    directory = root / "ssh" / stack
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    return directory


def docker_ssh_options(settings: Settings) -> list[str]:
    """ssh options that make the Docker connection check the same pinned host key as the
    host-prep commands, and use the configured identity."""
    host = settings.host
    assert host is not None, "only SSH stacks reach Docker over ssh"
    directory = ssh_dir(settings.stack)
    known_hosts = directory / "known_hosts"
    entry = host.address if host.port == 22 else f"[{host.address}]:{host.port}"
    known_hosts.write_text(f"{entry} {host.host_key}\n")
    options = ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"]
    if host.ssh_agent_socket:
        options += ["-o", f"IdentityAgent={host.ssh_agent_socket}"]
    elif settings.ssh_private_key is not None:
        identity = directory / "id"
        key = settings.ssh_private_key.get_secret_value()
        # An offline render only knows the key exists; there is nothing to write.
        if key != SECRET_PLACEHOLDER:
            descriptor = os.open(identity, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(key.strip() + "\n")
        options += ["-o", "IdentitiesOnly=yes", "-i", str(identity)]
    return options
