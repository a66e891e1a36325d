"""A real Ollama server of the pinned version, run natively (no Docker) with the tiny model, for tests
of the client-side tools (scripts/smoke, scripts/bench).

The `native_ollama` fixture builds the server with scripts/dev/build-ollama.sh (cached), starts
`ollama serve` on a free loopback port with its models in a temporary directory and the server
settings the stacks deploy (keep-alive forever, flash attention, q8_0 KV cache, debug log), imports
the tiny model as `tiny:base` with the CLI, as an operator would, and creates the alias `tiny:bench`
through POST /api/create, as the deploy does. Test modules import the fixture by name; the load
benchmark (benchmarks/load_standin.py) starts the same server through running_native_ollama.
"""

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ollama
import pytest

from tests.integration import harness
from tests.integration.tiny_model import write_tiny_gguf

BASE_MODEL = "tiny:base"
ALIAS = "tiny:bench"
CONTEXT_LENGTH = 16384
ALIAS_PARAMETERS = {"num_ctx": CONTEXT_LENGTH, "num_predict": 64}


@dataclass(frozen=True)
class NativeOllama:
    url: str
    alias: str
    log_path: Path
    binary: Path


def _build_server() -> Path:
    """The script's last stdout line is the binary; its log (stderr) shows in a failing test's output."""
    build = subprocess.run([harness.DEV_SCRIPTS / "build-ollama.sh"], stdout=subprocess.PIPE, text=True, check=False)
    harness.require(build.returncode == 0, f"scripts/dev/build-ollama.sh could not build the Ollama server (exit {build.returncode})")
    return Path(build.stdout.splitlines()[-1])


def _server_env(port: int, models: Path, num_parallel: int) -> dict[str, str]:
    # The developer's own OLLAMA_* settings must not leak into the server under test.
    env = {name: value for name, value in os.environ.items() if not name.startswith("OLLAMA_")}
    return env | {
        "OLLAMA_NUM_PARALLEL": str(num_parallel),
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(models),
        "OLLAMA_KEEP_ALIVE": "-1",
        "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_KV_CACHE_TYPE": "q8_0",
        "OLLAMA_DEBUG": "1",
        "OLLAMA_CONTEXT_LENGTH": str(CONTEXT_LENGTH),
    }


def _wait_until_answering(url: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + harness.SERVER_START_SECONDS
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ollama serve did not start at {url}; see {log_path}") from None
            time.sleep(0.1)


def _stop(server: subprocess.Popen) -> None:
    """Stops the server and the runner it forked (its own process group, started for this test)."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _add_models(binary: Path, env: dict[str, str], url: str, workdir: Path) -> None:
    write_tiny_gguf(workdir / "tiny.gguf")
    (workdir / "Modelfile").write_text("FROM ./tiny.gguf\n")
    subprocess.run(
        [binary, "create", BASE_MODEL, "-f", "Modelfile"], cwd=workdir, env=env, check=True, capture_output=True
    )
    ollama.Client(host=url).create(model=ALIAS, from_=BASE_MODEL, parameters=ALIAS_PARAMETERS)


@contextlib.contextmanager
def running_native_ollama(workdir: Path, num_parallel: int = 1) -> Iterator[NativeOllama]:
    """The server with the tiny model and its alias, stopped on exit; num_parallel is
    OLLAMA_NUM_PARALLEL (1, the pinned version's default, for the tests)."""
    binary = _build_server()
    port = harness.free_port()
    url = f"http://127.0.0.1:{port}"
    env = _server_env(port, workdir / "models", num_parallel)
    log_path = workdir / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_until_answering(url, server, log_path)
        _add_models(binary, env, url, workdir)
        yield NativeOllama(url, ALIAS, log_path, binary)
    finally:
        _stop(server)


@pytest.fixture(scope="session")
def native_ollama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeOllama]:
    with running_native_ollama(tmp_path_factory.mktemp("native-ollama")) as server:
        yield server
