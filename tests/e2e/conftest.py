"""Fixtures for the real-engine tests: the engine itself (tests/e2e/engine.py), and the integration
harness's real systems (Docker engine, stand-in Ollama image, native Ollama with the tiny model)."""

import pytest

from tests.e2e.engine import Engine, find_engine
from tests.integration.conftest import docker_engine, ollama_standin_image  # noqa: F401  (re-exported fixtures)
from tests.integration.native_server import native_ollama  # noqa: F401  (re-exported fixture)


@pytest.fixture(scope="session")
def pulumi_engine() -> Engine:
    return find_engine()
