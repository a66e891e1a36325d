"""Step 2 of the recipe: the Ollama container, tuned by settings, that heals itself and reloads its
model after every start."""

from typing import Optional

import pulumi
import pulumi_docker as docker

from ollama_gpu.go_duration import seconds_text
from ollama_gpu.server_env import effective_env
from ollama_gpu.settings import ServerSettings, duration_seconds
from ollama_gpu.shell import render_script

MODELS_PATH = "/root/.ollama"
COMPONENT_TYPE = "ollama-gpu:index:OllamaServer"
API_PORT_IN_CONTAINER = 11434
PUBLIC_BIND_LABEL = "ollama-gpu.allow-public-bind"
# Says to the policy pack that the private-network port is the router's way in.
ROUTER_BACKEND_LABEL = "ollama-gpu.router-backend"
RETAIN_LABEL = "ollama-gpu.retain-on-delete"
# OLLAMA_DEBUG logs every request: without rotation the log fills the VM's disk over weeks.
LOG_OPTIONS = {"max-size": "20m", "max-file": "5"}


class OllamaServer(pulumi.ComponentResource):
    container: docker.Container

    def __init__(self, name: str, server: ServerSettings, provider: docker.Provider, *, gpu: bool, warm_model: str,
                 volume: docker.Volume, replaces: Optional[pulumi.Alias] = None, router_backend: bool = False,
                 opts: Optional[pulumi.ResourceOptions] = None):
        """`replaces`: the other engine's container, which this one takes over (see engine_switch);
        `router_backend`: a fleet host's server, published on its private address for the router."""
        super().__init__(COMPONENT_TYPE, name, None, opts)
        on_host = pulumi.ResourceOptions(parent=self, provider=provider)

        image = docker.RemoteImage(f"{name}-image", name=server.image, keep_locally=True, opts=on_host)
        heal = server.self_heal
        self.container = docker.Container(
            f"{name}-container",
            name=server.container_name,
            image=image.image_id,
            # bash runs the server and then loads the alias (scripts/container/serve.sh).
            entrypoints=["/bin/bash", "-c", render_script("container/serve.sh", {
                "WARM_MODEL": warm_model,
                "READY_TIMEOUT_SECONDS": server.startup_timeout_seconds,
            }), "serve"],
            envs=[f"{key}={value}" for key, value in effective_env(server.env).items()],
            ports=[docker.ContainerPortArgs(internal=API_PORT_IN_CONTAINER, external=server.port, ip=server.bind_address)],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=MODELS_PATH)],
            gpus="all" if gpu else None,
            restart=server.restart,
            # docker-init as PID 1 lets the health check kill a hung server (PID 1 ignores that).
            init=True,
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "bash", "-c", render_script("container/healthcheck.sh", {
                    "PROBE_TIMEOUT_SECONDS": heal.probe_timeout_seconds,
                    "FAILURES_BEFORE_RESTART": heal.failures_before_restart,
                })],
                interval=seconds_text(heal.probe_interval_seconds),
                # Docker's own limit stays above the script's so the script can count and act.
                timeout=seconds_text(heal.probe_timeout_seconds + 5),
                retries=heal.failures_before_restart,
                start_period=seconds_text(30),
            ),
            log_driver="json-file",
            log_opts=LOG_OPTIONS,
            wait=True,
            wait_timeout=server.startup_timeout_seconds,
            must_run=True,
            labels=exposure_labels(server, router_backend),
            # The name and host port are fixed, so the old container must go before the new one starts.
            opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(
                delete_before_replace=True, aliases=[replaces] if replaces else None,
            )),
        )
        self.register_outputs({"container_id": self.container.id})


def exposure_labels(server: ServerSettings, router_backend: bool) -> Optional[list[docker.ContainerLabelArgs]]:
    """Why a server's port may be bound beyond loopback, for the policy pack: the user allowed a
    public bind, or the port is a fleet host's private-network way in for the router."""
    return [docker.ContainerLabelArgs(label=label, value="true") for label, wanted in (
        (PUBLIC_BIND_LABEL, server.allow_public_bind), (ROUTER_BACKEND_LABEL, router_backend)) if wanted] or None


def retained_volume(resource_name: str, volume_name: str, opts: pulumi.ResourceOptions) -> docker.Volume:
    """A named volume that outlives `pulumi destroy` (a destroy must not throw away 32 GB of pulled
    weights); the label states it for the policy pack, which cannot see resource options."""
    return docker.Volume(
        resource_name, name=volume_name,
        labels=[docker.VolumeLabelArgs(label=RETAIN_LABEL, value="true")],
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(retain_on_delete=True)),
    )


def load_timeout_seconds(server: ServerSettings) -> int:
    return int(duration_seconds(server.env.load_timeout))
