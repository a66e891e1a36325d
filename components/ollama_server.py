"""Step 2 of the recipe: the Ollama container, tuned by settings, that heals itself."""

from typing import Optional

import pulumi
import pulumi_docker as docker

from ollama_gpu.server_env import effective_env
from ollama_gpu.settings import Settings
from ollama_gpu.shell import render_script
from ollama_gpu.ssh_files import docker_ssh_options

MODELS_PATH = "/root/.ollama"
API_PORT_IN_CONTAINER = 11434
PUBLIC_BIND_LABEL = "ollama-gpu.allow-public-bind"
RETAIN_LABEL = "ollama-gpu.retain-on-delete"


class OllamaServer(pulumi.ComponentResource):
    container: docker.Container

    def __init__(self, name: str, settings: Settings, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("ollama-gpu:index:OllamaServer", name, None, opts)
        server = settings.server
        child = pulumi.ResourceOptions(parent=self)

        host = settings.host
        provider = docker.Provider(
            "docker-host",
            host=f"ssh://{host.user}@{host.address}:{host.port}" if host else "unix:///var/run/docker.sock",
            ssh_opts=docker_ssh_options(settings) if host else None,
            opts=child,
        )
        on_host = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(provider=provider))

        image = docker.RemoteImage("ollama-image", name=server.image, keep_locally=True, opts=on_host)
        # Retained on delete: a destroy must not throw away 32 GB of pulled weights. The label
        # states it for the policy pack, which cannot see resource options.
        volume = docker.Volume(
            "ollama-models", name=server.models_volume,
            labels=[docker.VolumeLabelArgs(label=RETAIN_LABEL, value="true")],
            opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(retain_on_delete=True)),
        )
        heal = server.self_heal
        self.container = docker.Container(
            "ollama",
            name=server.container_name,
            image=image.image_id,
            envs=[f"{key}={value}" for key, value in effective_env(settings).items()],
            ports=[docker.ContainerPortArgs(internal=API_PORT_IN_CONTAINER, external=server.port, ip=server.bind_address)],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=MODELS_PATH)],
            gpus="all" if settings.has_gpu else None,
            restart=server.restart,
            # docker-init as PID 1 lets the health check kill a hung server (PID 1 ignores that).
            init=True,
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "bash", "-c", render_script("container/healthcheck.sh", {
                    "PROBE_TIMEOUT_SECONDS": heal.probe_timeout_seconds,
                    "FAILURES_BEFORE_RESTART": heal.failures_before_restart,
                })],
                interval=f"{heal.probe_interval_seconds}s",
                # Docker's own limit stays above the script's so the script can count and act.
                timeout=f"{heal.probe_timeout_seconds + 5}s",
                retries=heal.failures_before_restart,
                start_period="30s",
            ),
            wait=True,
            wait_timeout=server.startup_timeout_seconds,
            must_run=True,
            labels=[docker.ContainerLabelArgs(label=PUBLIC_BIND_LABEL, value="true")] if server.allow_public_bind else None,
            # The name and host port are fixed, so the old container must go before the new one starts.
            opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(delete_before_replace=True)),
        )
        self.register_outputs({"container_id": self.container.id})
