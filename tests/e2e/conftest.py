"""Fixtures for the real-engine tests: the engine itself (tests/e2e/engine.py), and the integration
harness's real systems (Docker engine, stand-in Ollama, llama-server and caddy images, native Ollama with
the tiny model)."""

import pytest

from tests.e2e.engine import Engine, find_engine
from tests.integration.conftest import (  # noqa: F401  (re-exported fixtures)
    docker_engine,
    gateway_standin_image,
    llama_server_standin_image,
    ollama_standin_image,
)
from tests.integration.native_server import native_ollama  # noqa: F401  (re-exported fixture)


@pytest.fixture(scope="session")
def pulumi_engine() -> Engine:
    return find_engine()
