"""The e2e tests reuse the integration harness's real systems (Docker engine, stand-in Ollama image,
native Ollama server with the tiny model)."""

from tests.integration.conftest import docker_engine, ollama_standin_image  # noqa: F401
from tests.integration.native_server import native_ollama  # noqa: F401
