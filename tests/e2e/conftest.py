"""Fixtures for the real-engine tests: the engine itself (tests/e2e/engine.py), and Docker as the
integration tests get it."""

import pytest

from tests.e2e.engine import Engine, find_engine
from tests.integration.conftest import docker_engine  # noqa: F401  (re-exported fixture)


@pytest.fixture(scope="session")
def pulumi_engine() -> Engine:
    return find_engine()
