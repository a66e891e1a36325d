"""The gateway container the program registers for a local stack, started here as the docker
provider would start it (Caddy 2.6.2 from Debian's package, in the stand-in for the official caddy
image, with the Caddyfile upload and data volume of the registered inputs), in front of a server
already listening on a loopback port, with the CA root read by the registered command."""

import contextlib
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ollama_gpu.offline import ProgramRun
from tests.integration import harness
from tests.integration.program_spec import copy_uploads, docker_create_args, render

SITE = "127.0.0.1"


@dataclass
class Gateway:
    url: str
    ca_file: Path
    ca_root: str
    container: str
    volume: str
    image: str
    port: int
    upstream_port: int
    engine: str

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    @property
    def suffix(self) -> str:
        return self.container.rsplit("-", 1)[1]


def program(upstream_port: int, port: int, suffix: str, keys: tuple[str, ...], engine: str = "ollama",
            **gateway: str) -> ProgramRun:
    """The local stack with the gateway on, its upstream the server's loopback port; `gateway`
    adds settings of that section (a domain and ACME CA)."""
    config = {
        "profile": "none",
        "server": {"port": upstream_port, "engine": engine},
        "gateway": {
            "enabled": True, "port": port, "bindAddress": SITE, "apiKeys": list(keys),
            "containerName": f"{harness.RESOURCE_PREFIX}-gateway-{suffix}",
            "dataVolume": f"{harness.RESOURCE_PREFIX}-gateway-data-{suffix}",
            **gateway,
        },
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OLLAMA_GPU_OFFLINE", "1")
        patch.setenv("OLLAMA_GPU_NO_REGISTRY", "1")
        return render("local", config, secret_keys=["gateway"])


def start(run: ProgramRun, image: str) -> str:
    """Creates the registered gateway container as the provider does and runs the registered
    command that reads the CA root; returns what that command printed (the exported root), or ""
    for a gateway with a domain, whose certificate comes by ACME and which reads no root."""
    container = run.by_name("gateway-container")
    subprocess.run(["docker", "create", *docker_create_args(container, image)], check=True, capture_output=True)
    copy_uploads(container)
    subprocess.run(["docker", "start", container.inputs["name"]], check=True, capture_output=True)
    if "gateway-ca-root" not in run.names():
        return ""
    read_root = run.by_name("gateway-ca-root").inputs
    result = subprocess.run(["/bin/sh", "-c", read_root["create"]], input=read_root["stdin"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@contextlib.contextmanager
def running_gateway(upstream_port: int, keys: tuple[str, ...], workdir: Path, engine: str = "ollama") -> Iterator[Gateway]:
    harness.require(harness.docker_answers(), "no Docker daemon answers (scripts/dev/install-prerequisites.sh sets one up)")
    image = harness.run_dev_script("build-gateway-image.sh")
    port, suffix = harness.free_port(), uuid.uuid4().hex[:8]
    run = program(upstream_port, port, suffix, keys, engine)
    container, volume = run.by_name("gateway-container").inputs["name"], run.by_name("gateway-data").inputs["name"]
    try:
        root = start(run, image)
        ca_file = workdir / "ca-root.crt"
        ca_file.write_text(root)
        assert run.outputs["gateway_url"] == f"https://{SITE}:{port}"
        yield Gateway(run.outputs["gateway_url"], ca_file, root, container, volume, image, port, upstream_port, engine)
    finally:
        harness.remove_containers([container])
        subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True, check=False)
