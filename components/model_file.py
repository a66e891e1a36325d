"""llama-server's model: the GGUF Ollama would pull for the stack's base model, fetched from the
model registry into the models volume (scripts/host/model-file.sh) before the server starts."""

from typing import Optional

import pulumi
import pulumi_docker as docker

from components.transport import CommandTarget, HostCommand
from ollama_gpu.model_source import ModelSource
from ollama_gpu.settings import ModelSettings, duration_seconds

PROGRESS_SECONDS = 15


class ModelFile(pulumi.ComponentResource):
    """One host command; it runs again when the model or the volume changes (a new volume starts
    empty). It has no delete: the model stays in the volume, like Ollama's base model, so a
    recreated stack or a switch back to Ollama downloads nothing."""

    fetch: HostCommand

    def __init__(self, name: str, model: ModelSettings, target: CommandTarget, *, models_volume: str,
                 volume: docker.Volume, opts: Optional[pulumi.ResourceOptions] = None):
        """`models_volume` names the docker volume `volume` creates."""
        super().__init__("ollama-gpu:index:ModelFile", name, None, opts)
        source = ModelSource.for_model(model)
        self.fetch = target.command(
            f"{name}-fetch", "host/model-file.sh",
            {
                "VOLUME": models_volume,
                "REGISTRY_URL": source.registry_url,
                "REPOSITORY": source.name.repository,
                "TAG": source.name.tag,
                "MANIFEST_PATH": source.manifest_path,
                "LINK_PATH": source.link_path,
                "TIMEOUT_SECONDS": int(duration_seconds(model.pull_timeout)),
                "PROGRESS_SECONDS": PROGRESS_SECONDS,
            },
            # Writes into Docker's volume directory, which only root may.
            privileged=True,
            triggers=[models_volume],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[volume]),
        )
        self.register_outputs({})
