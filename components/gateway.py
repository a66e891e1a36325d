"""The team endpoint (opt-in): Caddy beside Ollama terminates HTTPS and admits only requests that
carry an API key; Ollama stays on loopback, reached by Caddy through the host's network.

The Caddyfile holds the keys, so it travels as a secret upload; a rotated key replaces only this
container. The CA Caddy creates lives in a kept volume, so the exported root survives rotations
and re-creations of the container, and is read back by a host command after each start."""

import secrets
from typing import Optional

import pulumi
import pulumi_docker as docker

from components.ollama_server import LOG_OPTIONS, retained_volume
from components.transport import CommandTarget
from ollama_gpu.gateway_config import ACME_CA_ROOT_PATH, CA_ROOT_PATH, SERVED_PATHS, GatewayConfig, render_caddyfile
from ollama_gpu.settings import UNDECRYPTED_SECRET, GatewaySettings

CADDYFILE_PATH = "/etc/caddy/Caddyfile"
DATA_PATH = "/data"
# Caddy creates its CA within a second of starting; the rest is for a slow pull-free start on a busy host.
CA_ROOT_WAIT_SECONDS = 120


class Gateway(pulumi.ComponentResource):
    container: docker.Container
    ca_root: pulumi.Output[str]

    def __init__(self, name: str, gateway: GatewaySettings, provider: docker.Provider, target: CommandTarget, *,
                 site_name: str, upstream: str, served: str, server: pulumi.Resource,
                 upstream_key: Optional[str] = None, opts: Optional[pulumi.ResourceOptions] = None):
        """`served`: a key of SERVED_PATHS, what runs at `upstream`; `upstream_key`: the key the
        gateway sends upstream in place of the client's (the router's master key)."""
        super().__init__("ollama-gpu:index:Gateway", name, None, opts)
        on_host = pulumi.ResourceOptions(parent=self, provider=provider)

        image = docker.RemoteImage(f"{name}-image", name=gateway.image, keep_locally=True, opts=on_host)
        volume = retained_volume(f"{name}-data", gateway.data_volume, on_host)
        self.container = docker.Container(
            f"{name}-container",
            name=gateway.container_name,
            image=image.image_id,
            # The host's network: Caddy reaches Ollama on the host's loopback, where Ollama alone listens.
            network_mode="host",
            uploads=[docker.ContainerUploadArgs(file=CADDYFILE_PATH, content=pulumi.Output.secret(
                caddyfile(gateway, site_name, upstream, served, upstream_key)))] + ([
                docker.ContainerUploadArgs(file=ACME_CA_ROOT_PATH, content=gateway.acme_ca_root)] if gateway.acme_ca_root else []),
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=DATA_PATH)],
            restart="unless-stopped",
            log_driver="json-file",
            log_opts=LOG_OPTIONS,
            must_run=True,
            # The name is fixed and the port is the host's, so the old container must go first.
            opts=pulumi.ResourceOptions.merge(
                on_host, pulumi.ResourceOptions(delete_before_replace=True, depends_on=[server]),
            ),
        )
        if gateway.domain is None:
            read_root = target.command(
                f"{name}-ca-root", "host/gateway-ca-root.sh",
                {"CONTAINER_NAME": gateway.container_name, "CA_ROOT_PATH": CA_ROOT_PATH, "WAIT_SECONDS": CA_ROOT_WAIT_SECONDS},
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.container]),
                triggers=[self.container.id],
            )
            # A public certificate: stdout is plain even though the container it came from holds a secret.
            self.ca_root = pulumi.Output.unsecret(read_root.stdout)
        else:
            self.ca_root = pulumi.Output.from_input("")
        self.register_outputs({"container_id": self.container.id, "ca_root": self.ca_root})


def caddyfile(gateway: GatewaySettings, site_name: str, upstream: str, served: str,
              upstream_key: Optional[str] = None) -> str:
    return render_caddyfile(GatewayConfig(
        site_name=site_name, port=gateway.port, bind_address=gateway.bind_address,
        upstream=upstream, api_keys=tuple(_key_text(key.get_secret_value()) for key in gateway.api_keys),
        served_paths=SERVED_PATHS[served], acme_email=gateway.acme_email,
        acme_directory=gateway.acme_directory, acme_ca_root=gateway.acme_ca_root is not None,
        upstream_key=upstream_key,
    ))


def _key_text(key: str) -> str:
    """An offline read of the stack file (make plan) cannot decrypt keys: each stands in as a fresh
    random key, so the file renders, and were it ever deployed it would admit no one."""
    return secrets.token_hex(32) if key == UNDECRYPTED_SECRET else key
