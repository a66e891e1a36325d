"""Switching `server.engine` with one config line and one `pulumi up`.

Each engine is its own component with its own container, and both publish the same host port.
Pulumi creates what the program registers before it deletes what the program no longer
registers, so two unrelated containers would collide on the port: the new one would fail to
start while the old one still holds it. Instead, each engine's container names the other engine's
container as an alias, so Pulumi sees one container whose image and command change, a
replacement; delete_before_replace then removes the old container before the new one starts.
The models volume belongs to neither component (components/models_volume.py) and stays.
"""

import pulumi

from components.llama_server import COMPONENT_TYPE as LLAMA_SERVER_TYPE
from components.ollama_server import COMPONENT_TYPE as OLLAMA_TYPE
from ollama_gpu.settings import Engine

# The component each engine runs as: (resource name, type). Its container is "<name>-container".
COMPONENTS: dict[str, tuple[str, str]] = {
    "ollama": ("ollama", OLLAMA_TYPE),
    "llama-server": ("llama-server", LLAMA_SERVER_TYPE),
}


def component_name(engine: Engine) -> str:
    return COMPONENTS[engine][0]


def component_urn(engine: Engine) -> pulumi.Output[str]:
    return pulumi.create_urn(*COMPONENTS[engine])


def takes_over_from(engine: Engine) -> pulumi.Alias:
    """The alias under which `engine`'s container is found in the state of a stack that ran it."""
    name, _ = COMPONENTS[engine]
    return pulumi.Alias(name=f"{name}-container", parent=component_urn(engine))


def other_engine(engine: Engine) -> Engine:
    return "llama-server" if engine == "ollama" else "ollama"
