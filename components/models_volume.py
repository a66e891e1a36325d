"""The models volume: Ollama's model store, which llama-server reads too. It belongs to neither
engine's component, so switching engines keeps it (and its 32 GB) in place and in the state."""

import pulumi
import pulumi_docker as docker

from components.engine_switch import component_urn
from components.ollama_server import retained_volume

RESOURCE_NAME = "ollama-models"


def models_volume(volume_name: str, provider: docker.Provider, prefix: str = "") -> docker.Volume:
    """`prefix`: a fleet host's ("gpu1-"), so each host's volume is its own resource."""
    # Until the second engine a one-host stack's volume was the Ollama component's child: the alias
    # keeps a deployed stack's volume the same resource instead of a create and a delete in the next
    # diff. (Fleets came with the second engine; they have no older state to follow.)
    moved = [pulumi.Alias(parent=component_urn("ollama"))] if not prefix else None
    return retained_volume(prefix + RESOURCE_NAME, volume_name, pulumi.ResourceOptions(provider=provider, aliases=moved))
