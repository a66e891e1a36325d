"""The models volume: Ollama's model store, which llama-server reads too. It belongs to neither
engine's component, so switching engines keeps it (and its 32 GB) in place and in the state."""

import pulumi
import pulumi_docker as docker

from components.engine_switch import component_urn
from components.ollama_server import retained_volume

RESOURCE_NAME = "ollama-models"


def models_volume(volume_name: str, provider: docker.Provider) -> docker.Volume:
    # Until the second engine the volume was the Ollama component's child: the alias keeps a
    # deployed stack's volume the same resource instead of a create and a delete in the next diff.
    moved = pulumi.Alias(parent=component_urn("ollama"))
    return retained_volume(RESOURCE_NAME, volume_name, pulumi.ResourceOptions(provider=provider, aliases=[moved]))
