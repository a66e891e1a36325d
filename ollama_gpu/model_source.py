"""Where llama-server's model file comes from and where it lands: the blob Ollama would pull for
the stack's base model, from the stack's model registry, stored in the models volume the way
Ollama stores it (so either engine finds the other's download), plus the stable path the
llama-server container's --model names."""

from dataclasses import dataclass

from ollama_gpu.planner.registry import ModelName
from ollama_gpu.settings import ModelSettings

# Ollama's model store in the volume (OLLAMA_MODELS under /root/.ollama).
MODELS_DIR = "models"


@dataclass(frozen=True)
class ModelSource:
    registry_url: str
    name: ModelName

    @classmethod
    def for_model(cls, model: ModelSettings) -> "ModelSource":
        """`model.pull_name` is what Ollama pulls (the base on the configured registry); the
        registry's URL keeps its scheme (http:// is an insecure registry), else Ollama's default
        of https on the name's host."""
        name = ModelName.parse(model.pull_name.split("://", 1)[-1])
        if model.registry is not None:
            url = model.registry.rstrip("/")
        elif "://" in model.base:
            url = f"{model.base.split('://', 1)[0]}://{name.host}"
        else:
            url = f"https://{name.host}"
        return cls(url, name)

    @property
    def manifest_path(self) -> str:
        """Relative to models/: where Ollama keeps this model's manifest (server/manifest paths)."""
        name = self.name
        return f"manifests/{name.host}/{name.namespace}/{name.model}/{name.tag}"

    @property
    def link_path(self) -> str:
        """Relative to models/: the link to the model's GGUF blob that llama-server loads."""
        name = self.name
        return f"llama-server/{name.host}/{name.namespace}/{name.model}/{name.tag}.gguf"

    def path_in(self, mount: str) -> str:
        """The model file's path in a container that mounts the volume at `mount`."""
        return f"{mount}/{MODELS_DIR}/{self.link_path}"
