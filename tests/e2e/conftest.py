"""Fixtures for the real-engine tests: the engine itself (tests/e2e/engine.py) and Docker."""

import pytest

from tests.e2e.engine import Engine, find_engine
from tests.integration import harness


@pytest.fixture(scope="session")
def docker_engine() -> None:
    harness.require(harness.docker_answers(), "no Docker daemon answers (scripts/dev/install-prerequisites.sh sets one up)")


@pytest.fixture(scope="session")
def pulumi_engine() -> Engine:
    return find_engine()
