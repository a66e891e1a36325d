"""The second engine: llama.cpp's llama-server in its official image, serving the GGUF the model
file step put into the models volume. It loads the model at start and answers only once it is
loaded, so the container's health (which `pulumi up` waits for) means warm, after every start."""

from typing import Optional

import pulumi
import pulumi_docker as docker

from components.ollama_server import LOG_OPTIONS, exposure_labels
from components.transport import CommandTarget, HostCommand
from ollama_gpu.go_duration import seconds_text
from ollama_gpu.settings import LlamaServerSettings, ServerSettings
from ollama_gpu.shell import render_script

COMPONENT_TYPE = "ollama-gpu:index:LlamaServer"
# Where the container sees the models volume, read-only: the server only reads the GGUF.
MODELS_MOUNT = "/models"
# The official image's default port (LLAMA_ARG_PORT unset); it listens on LLAMA_ARG_HOST=0.0.0.0.
API_PORT_IN_CONTAINER = 8080


class LlamaServer(pulumi.ComponentResource):
    container: docker.Container
    report: HostCommand

    def __init__(self, name: str, llama: LlamaServerSettings, server: ServerSettings, provider: docker.Provider,
                 target: CommandTarget, *, gpu: bool, arguments: list[str], volume: docker.Volume,
                 model_file: pulumi.Resource, api_url: str, expected: dict[str, str],
                 replaces: Optional[pulumi.Alias] = None, router_backend: bool = False,
                 opts: Optional[pulumi.ResourceOptions] = None):
        """`arguments`: llama-server's argv (ollama_gpu.llama_server_argv); `replaces`: the other
        engine's container, which this one takes over (components/engine_switch.py);
        `router_backend`: a fleet host's server, published on its private address for the router;
        `expected`: what the report step holds the server to (llama_verification.expected_report)."""
        super().__init__(COMPONENT_TYPE, name, None, opts)
        on_host = pulumi.ResourceOptions(parent=self, provider=provider)

        image = docker.RemoteImage(f"{name}-image", name=llama.image, keep_locally=True, opts=on_host)
        heal = server.self_heal
        self.container = docker.Container(
            f"{name}-container",
            name=llama.container_name,
            image=image.image_id,
            # The image's entrypoint is the server; these are its flags, one list item each.
            command=arguments,
            ports=[docker.ContainerPortArgs(internal=API_PORT_IN_CONTAINER, external=server.port, ip=server.bind_address)],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=MODELS_MOUNT, read_only=True)],
            gpus="all" if gpu else None,
            restart=server.restart,
            # docker-init as PID 1 lets the health check kill a hung server (PID 1 ignores that).
            init=True,
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "bash", "-c", render_script("container/llama-healthcheck.sh", {
                    "PROBE_TIMEOUT_SECONDS": heal.probe_timeout_seconds,
                    "FAILURES_BEFORE_RESTART": heal.failures_before_restart,
                })],
                interval=seconds_text(heal.probe_interval_seconds),
                # Docker's own limit stays above the script's two probes so the script can count and act.
                timeout=seconds_text(2 * heal.probe_timeout_seconds + 5),
                retries=heal.failures_before_restart,
                # The model loads before the server answers: loading is not a failure.
                start_period=seconds_text(server.startup_timeout_seconds),
            ),
            log_driver="json-file",
            log_opts=LOG_OPTIONS,
            wait=True,
            wait_timeout=server.startup_timeout_seconds,
            must_run=True,
            labels=exposure_labels(server, router_backend),
            # The host port is the other engine's too: the old container must go before this one starts.
            opts=pulumi.ResourceOptions.merge(on_host, pulumi.ResourceOptions(
                delete_before_replace=True, depends_on=[model_file], aliases=[replaces] if replaces else None,
            )),
        )
        self.report = target.command(
            f"{name}-report", "host/llama-server-report.sh",
            {"API_URL": api_url, "CONTAINER_NAME": llama.container_name, **expected},
            # `docker logs` needs root or the docker group.
            privileged=True,
            triggers=[self.container.id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.container]),
        )
        self.register_outputs({"container_id": self.container.id})
