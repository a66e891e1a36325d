"""The fleet's router: LiteLLM's proxy in a container on one host of the fleet, in front of every
host's server, Ollama or llama-server (reached at their private addresses), with the master key as the one client key.

The config holds the key, so it travels as a secret upload; a changed key, host list or routing
setting replaces only this container. The container uses the host's network: it listens on the
configured address only and reaches the other hosts over the private network as the host does."""

import secrets
from typing import Optional, Sequence

import pulumi
import pulumi_docker as docker

from components.ollama_server import LOG_OPTIONS
from ollama_gpu.fleet import FleetMember, backend_url
from ollama_gpu.router_config import Backend, RouterConfig, render_router_config
from ollama_gpu.settings import UNDECRYPTED_SECRET, RouterSettings, Settings

CONFIG_PATH = "/app/config.yaml"


class Router(pulumi.ComponentResource):
    container: docker.Container

    def __init__(self, name: str, router: RouterSettings, provider: docker.Provider, *, config: pulumi.Input[str],
                 backends_ready: Sequence[pulumi.Resource], opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("ollama-gpu:index:Router", name, None, opts)
        on_host = pulumi.ResourceOptions(parent=self, provider=provider)
        image = docker.RemoteImage(f"{name}-image", name=router.image, keep_locally=True, opts=on_host)
        self.container = docker.Container(
            f"{name}-container",
            name=router.container_name,
            image=image.image_id,
            network_mode="host",
            # The official image's entrypoint runs `litellm` with these arguments; one worker keeps
            # the in-flight counts least-busy routing relies on in one process.
            command=["--config", CONFIG_PATH, "--host", router.bind_address, "--port", str(router.port), "--num_workers", "1"],
            uploads=[docker.ContainerUploadArgs(file=CONFIG_PATH, content=pulumi.Output.secret(config))],
            restart="unless-stopped",
            log_driver="json-file",
            log_opts=LOG_OPTIONS,
            must_run=True,
            # The name is fixed and the port is the host's, so the old container must go first.
            opts=pulumi.ResourceOptions.merge(
                on_host, pulumi.ResourceOptions(delete_before_replace=True, depends_on=list(backends_ready)),
            ),
        )
        self.register_outputs({"container_id": self.container.id})


def master_key(router: RouterSettings) -> str:
    """An offline read of the stack file (make plan) cannot decrypt the key: a fresh random one
    stands in, so the configs render, and were they ever deployed they would admit no one."""
    assert router.master_key is not None, "settings require a master key when the router is enabled"
    key = router.master_key.get_secret_value()
    return f"sk-{secrets.token_hex(32)}" if key == UNDECRYPTED_SECRET else key


def router_config(settings: Settings, members: Sequence[FleetMember]) -> str:
    router = settings.router
    return render_router_config(RouterConfig(
        alias=settings.model.alias,
        backends=tuple(Backend(member.name, backend_url(member), member.settings.server.engine) for member in members),
        master_key=master_key(router),
        routing_strategy=router.routing_strategy,
        num_retries=router.num_retries,
        timeout_seconds=router.timeout_seconds,
        allowed_fails=router.allowed_fails,
        cooldown_seconds=router.cooldown_seconds,
        health_check_interval_seconds=router.health_check_interval_seconds,
    ))
