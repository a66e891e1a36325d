"""The llama-server of the build pinned in pins.env, built here for the CPU by
scripts/dev/build-llama-server.sh (cached), run natively (no Docker) on the tiny model.

`llama_server_binary` is a session fixture: the built binary, or a skip (a failure under CI=true)
when it cannot be built. `running_llama_server` starts one server on a free loopback port with the
flags a test gives, waits until /health says the model is loaded, and stops it afterwards; its log
(the server writes everything to stderr) is kept in a file for the test to read.
"""

import contextlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration import harness

LOAD_SECONDS = 60


@dataclass(frozen=True)
class LlamaServer:
    url: str
    log_path: Path

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as response:
            return json.load(response)

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"{self.url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)

    @property
    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="session")
def llama_server_binary() -> Path:
    """The script's last stdout line is the binary; its log (stderr) shows in a failing test's output."""
    build = subprocess.run(
        [harness.DEV_SCRIPTS / "build-llama-server.sh"], stdout=subprocess.PIPE, text=True, check=False
    )
    harness.require(
        build.returncode == 0, f"scripts/dev/build-llama-server.sh could not build llama-server (exit {build.returncode})"
    )
    return Path(build.stdout.splitlines()[-1])


def _health(url: str) -> int | None:
    """/health's status code: 200 once the model is loaded, 503 while loading, None if nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


@contextlib.contextmanager
def running_llama_server(binary: Path, model: Path, flags: list[str], log_path: Path) -> Iterator[LlamaServer]:
    port = harness.free_port()
    url = f"http://127.0.0.1:{port}"
    # The developer's own LLAMA_ARG_* settings must not leak into the server under test.
    env = {name: value for name, value in os.environ.items() if not name.startswith("LLAMA_ARG_")}
    command = [binary, "--model", model, "--host", "127.0.0.1", "--port", str(port), *flags]
    with log_path.open("w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + LOAD_SECONDS
        while _health(url) != 200:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"llama-server did not load the model at {url}:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield LlamaServer(url, log_path)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
