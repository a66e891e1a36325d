"""The stand-in for the official llama.cpp server image: the official image's name, layout, entry
point, environment and health check, and a container of it serving the tiny model on its published
port, as a stack runs it."""

import json
import subprocess
import time
from pathlib import Path

import pytest

from ollama_gpu.pins import LLAMA_SERVER_IMAGE
from tests.integration import harness, tiny_model

pytestmark = pytest.mark.integration

ALIAS = "tiny:image"
LOAD_SECONDS = 60


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def test_has_the_official_layout(llama_server_standin_image: str):
    assert llama_server_standin_image == LLAMA_SERVER_IMAGE
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", llama_server_standin_image))
    assert config["Entrypoint"] == ["/app/llama-server"]
    assert config["WorkingDir"] == "/app"
    assert "LLAMA_ARG_HOST=0.0.0.0" in config["Env"]
    assert config["Healthcheck"]["Test"] == ["CMD", "curl", "-f", "http://localhost:8080/health"]
    assert "STAND-IN" in config["Labels"]["org.opencontainers.image.description"]


def test_serves_the_alias_on_its_published_port(llama_server_standin_image: str, tmp_path: Path):
    tiny_model.write_tiny_gguf(tmp_path / "tiny.gguf")
    port = harness.free_port()
    name = f"{harness.RESOURCE_PREFIX}-llama-server-{port}"
    docker(
        "run", "--detach", "--name", name, "--label", harness.RESOURCE_PREFIX,
        "-v", f"{tmp_path}:/models:ro", "-p", f"127.0.0.1:{port}:8080", llama_server_standin_image,
        "--model", "/models/tiny.gguf", "--alias", ALIAS, "--ctx-size", "2048",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + LOAD_SECONDS
        # The image's own health check command, run in the container as Docker runs it.
        while subprocess.run(["docker", "exec", name, "curl", "-fsS", "http://localhost:8080/health"],
                             capture_output=True, check=False).returncode != 0:  # fmt: skip
            assert time.monotonic() < deadline, docker("logs", name)
            time.sleep(0.5)
        # Published from 0.0.0.0 inside the container: LLAMA_ARG_HOST reached the server.
        models = json.loads(subprocess.run(["curl", "-fsS", f"http://127.0.0.1:{port}/v1/models"],
                                           capture_output=True, text=True, check=True).stdout)  # fmt: skip
        assert [model["id"] for model in models["data"]] == [ALIAS]
    finally:
        harness.remove_containers([name])
