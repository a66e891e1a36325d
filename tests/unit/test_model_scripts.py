"""The model steps' scripts (host/lib/api.sh, host/model-pull.sh, host/model-alias.sh), rendered as
the program renders them and run against a stand-in for the Ollama API that answers as the real one
does: JSON bodies, an `error` field with the server's reason, a streamed pull. What the user reads
when a step fails is the server's own reason, and a pull shows progress and stops at its limit."""

import http.server
import json
import os
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import pytest

from ollama_gpu.shell import declared_parameters, script_command
from tests.unit.conftest import REPO

API_LIB = REPO / "scripts" / "host" / "lib" / "api.sh"
MIB = 2**20
OUT_OF_MEMORY = "model requires more system memory (33.5 GiB) than is available (20.1 GiB)"


@dataclass
class Answer:
    status: int = 200
    # One body, or the lines of a stream sent one by one (each a JSON object, as Ollama streams).
    body: Union[dict, list, None] = None
    pause_before_last: float = 0.0


@dataclass
class FakeOllama:
    url: str
    routes: dict[tuple[str, str], Answer]
    requests: list[tuple[str, str, str]] = field(default_factory=list)

    def bodies(self, method: str, path: str) -> list[str]:
        return [body for m, p, body in self.requests if (m, p) == (method, path)]


@pytest.fixture
def fake_ollama() -> Callable[[dict], FakeOllama]:
    servers = []
    stopping = threading.Event()

    def start(routes: dict[tuple[str, str], Answer]) -> FakeOllama:
        fake = FakeOllama(url="", routes=routes)

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                fake.requests.append((method, self.path, body))
                answer = fake.routes.get((method, self.path), Answer(404, {"error": f"no route {self.path}"}))
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                chunks = answer.body if isinstance(answer.body, list) else [answer.body or {}]
                for i, chunk in enumerate(chunks):
                    if i == len(chunks) - 1 and answer.pause_before_last:
                        stopping.wait(answer.pause_before_last)
                    try:
                        # Compact, as Go's encoder writes it: the scripts match fields by pattern.
                        self.wfile.write((json.dumps(chunk, separators=(",", ":")) + "\n").encode())
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        fake.url = f"http://127.0.0.1:{server.server_address[1]}"
        return fake

    yield start
    stopping.set()
    for server in servers:
        server.shutdown()
        server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def _run(script: str, params: dict, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """The script as the program runs it: only its declared parameters, the command and its stdin."""
    command = script_command(script, {name: params[name] for name in declared_parameters(script)}, script)
    return subprocess.run(["/bin/sh", "-c", command.line], input=command.stdin, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


# --- lib/api.sh: api_call ------------------------------------------------------------------------


def _api_call(api_url: str, *args: str) -> subprocess.CompletedProcess:
    program = f'set -euo pipefail; source "$1"; shift; api_call "$@"'
    return subprocess.run(["bash", "-c", program, "api-test", str(API_LIB), *args], capture_output=True, text=True,
                          timeout=30, env={**os.environ, "API_URL": api_url})


def test_api_call_prints_the_body_of_a_success_and_sends_the_body_verbatim(fake_ollama):
    api = fake_ollama({("POST", "/api/create"): Answer(200, {"status": "success"})})
    request = json.dumps({"model": "a:b", "parameters": {"stop": ["it's \"done\" $HOME"]}})
    result = _api_call(api.url, "POST", "/api/create", request)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"status": "success"}
    assert api.bodies("POST", "/api/create") == [request]


def test_api_call_shows_the_servers_reason_for_a_failure(fake_ollama):
    """`curl -f` would print only "(22) ... 500": the user needs the server's sentence."""
    api = fake_ollama({("POST", "/api/generate"): Answer(500, {"error": OUT_OF_MEMORY})})
    result = _api_call(api.url, "POST", "/api/generate", "{}")
    assert result.returncode == 1
    assert "HTTP 500" in result.stderr and OUT_OF_MEMORY in result.stderr
    assert result.stdout == ""
    assert "curl: (22)" not in result.stderr


def test_api_call_says_when_the_server_does_not_answer():
    result = _api_call(_closed_port_url(), "GET", "/api/ps")
    assert result.returncode == 1
    assert "GET /api/ps: the server did not answer" in result.stderr


# --- host/model-pull.sh --------------------------------------------------------------------------

PULL_NAME = "registry.example:5000/library/tiny:1b"


def _pull_params(api_url: str, timeout_seconds: int = 60) -> dict:
    return {
        "API_URL": api_url,
        "PULL_NAME": PULL_NAME,
        "SHOW_REQUEST": json.dumps({"model": PULL_NAME}),
        "PULL_REQUEST": json.dumps({"model": PULL_NAME, "stream": True, "insecure": True}),
        "PULL_TIMEOUT_SECONDS": timeout_seconds,
        "PROGRESS_STEP_PERCENT": 10,
    }


def _layer_progress(total: int, steps: int) -> list[dict]:
    return [{"status": "pulling 3f2a", "digest": "sha256:3f2a", "total": total, "completed": total * i // steps}
            for i in range(steps + 1)]


def test_a_present_model_is_not_pulled_again(fake_ollama):
    api = fake_ollama({("POST", "/api/show"): Answer(200, {"details": {}})})
    result = _run("host/model-pull.sh", _pull_params(api.url))
    assert result.returncode == 0, result.stderr
    assert "unchanged" in result.stdout
    assert api.bodies("POST", "/api/pull") == []


def test_a_pull_streams_progress_in_steps_and_reports_success(fake_ollama):
    stream = [{"status": "pulling manifest"}, *_layer_progress(1024 * MIB, 100),
              {"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
    api = fake_ollama({("POST", "/api/pull"): Answer(200, stream)})
    params = _pull_params(api.url)
    result = _run("host/model-pull.sh", params)

    assert result.returncode == 0, result.stderr
    assert api.bodies("POST", "/api/pull") == [params["PULL_REQUEST"]]
    progress = [line for line in result.stdout.splitlines() if "pulling 3f2a" in line]
    # One line per 10 % of 100 updates, not one per update: the deploy log stays readable.
    assert len(progress) == 11, progress
    assert progress[0].endswith("0 / 1024 MiB") and progress[-1].endswith("1024 / 1024 MiB")
    assert "ollama-gpu: pulling manifest" in result.stdout and "verifying sha256 digest" in result.stdout
    assert f"ollama-gpu: changed: pulled {PULL_NAME}" in result.stdout


def test_an_error_in_the_stream_fails_the_pull_with_the_servers_reason(fake_ollama):
    reason = "pull model manifest: file does not exist"
    api = fake_ollama({("POST", "/api/pull"): Answer(200, [{"status": "pulling manifest"}, {"error": reason}])})
    result = _run("host/model-pull.sh", _pull_params(api.url))
    assert result.returncode == 1
    assert f"pulling {PULL_NAME} failed: {reason}" in result.stderr
    assert "changed" not in result.stdout


def test_a_refused_pull_shows_the_servers_reason_and_no_curl_noise(fake_ollama):
    reason = "pull model manifest: 404 not found"
    api = fake_ollama({("POST", "/api/pull"): Answer(404, {"error": reason})})
    result = _run("host/model-pull.sh", _pull_params(api.url))
    assert result.returncode == 1
    assert reason in result.stderr
    assert "curl: (22)" not in result.stdout + result.stderr


def test_the_pull_stops_itself_at_its_time_limit(fake_ollama):
    """Pulumi's customTimeouts would stop waiting but leave the pull running on the host."""
    stalled = Answer(200, [{"status": "pulling manifest"}, {"status": "success"}], pause_before_last=30)
    api = fake_ollama({("POST", "/api/pull"): stalled})
    result = _run("host/model-pull.sh", _pull_params(api.url, timeout_seconds=2))
    # Had it waited for the stream, the stand-in's "success" would have made it pass.
    assert result.returncode == 1
    assert "did not finish within 2s (model.pullTimeout)" in result.stderr
    assert "last status: pulling manifest" in result.stderr


# --- host/model-alias.sh -------------------------------------------------------------------------

ALIAS = "tiny-1b:ctx2k"
PLACEMENT_LOG = [
    'time=2026-11-24T06:32:11.300Z level=INFO source=ggml.go:502 msg="offloaded 0/5 layers to GPU"',
    'time=2026-11-24T06:32:11.301Z level=INFO source=device.go:245 msg="model weights" device=CPU size="2.7 MiB"',
]


@pytest.fixture
def fake_docker(tmp_path) -> dict:
    """`docker logs NAME` printing a server log, on PATH ahead of any real docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = "\n".join(["level=INFO msg=\"unrelated line\"", *PLACEMENT_LOG])
    docker = bin_dir / "docker"
    docker.write_text(f"#!/bin/sh\n[ \"$1\" = logs ] && [ \"$2\" = ollama-gpu ] || exit 2\ncat <<'EOF' >&2\n{log}\nEOF\n")
    docker.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def _alias_params(api_url: str) -> dict:
    return {
        "API_URL": api_url,
        "ALIAS": ALIAS,
        "CREATE_REQUEST": json.dumps({"model": ALIAS, "from": "tiny:1b", "parameters": {"num_ctx": 2048}, "stream": False}),
        "LOAD_REQUEST": json.dumps({"model": ALIAS, "keep_alive": -1}),
        "LOAD_TIMEOUT_SECONDS": 30,
        "SHOW_REQUEST": json.dumps({"model": "tiny:1b"}),
        "CONTAINER_NAME": "ollama-gpu",
        # Off here: these tests are about creating, loading and reporting.
        "EXPECTED_OFFLOAD": "",
    }


PS = {"models": [{"name": ALIAS, "size": 13610496, "size_vram": 0, "context_length": 2048}]}
SHOW = {"model_info": {"general.architecture": "llama"}}


def _alias_routes(**overrides: Answer) -> dict:
    routes = {
        ("POST", "/api/create"): Answer(200, {"status": "success"}),
        ("POST", "/api/generate"): Answer(200, {"model": ALIAS, "response": "", "done": True}),
        ("GET", "/api/ps"): Answer(200, PS),
        ("POST", "/api/show"): Answer(200, SHOW),
    }
    routes.update({("POST", f"/api/{name}"): answer for name, answer in overrides.items()})
    return routes


def test_the_alias_step_creates_loads_and_reports_what_the_server_did(fake_ollama, fake_docker):
    from ollama_gpu.verification import LOG_MARK, PS_MARK, parse_report

    api = fake_ollama(_alias_routes())
    params = _alias_params(api.url)
    result = _run("host/model-alias.sh", params, env=fake_docker)

    assert result.returncode == 0, result.stderr
    assert api.bodies("POST", "/api/create") == [params["CREATE_REQUEST"]]
    assert api.bodies("POST", "/api/generate") == [params["LOAD_REQUEST"]]
    assert api.bodies("POST", "/api/show") == [params["SHOW_REQUEST"]]
    # The verification reads this very output (the alias step's stdout).
    assert PS_MARK in result.stdout and LOG_MARK in result.stdout
    report = parse_report(result.stdout, ALIAS)
    assert (report.layers_offloaded, report.layers_total) == (0, 5)
    assert report.loaded["context_length"] == 2048
    assert "unrelated line" not in result.stdout


def test_a_refused_create_fails_with_the_servers_reason_and_loads_nothing(fake_ollama, fake_docker):
    api = fake_ollama(_alias_routes(create=Answer(400, {"error": "invalid model name"})))
    result = _run("host/model-alias.sh", _alias_params(api.url), env=fake_docker)
    assert result.returncode == 1
    assert "invalid model name" in result.stderr and f"creating alias {ALIAS} failed" in result.stderr
    assert api.bodies("POST", "/api/generate") == []


def test_a_load_the_host_cannot_hold_fails_with_the_servers_reason(fake_ollama, fake_docker):
    api = fake_ollama(_alias_routes(generate=Answer(500, {"error": OUT_OF_MEMORY})))
    result = _run("host/model-alias.sh", _alias_params(api.url), env=fake_docker)
    assert result.returncode == 1
    assert OUT_OF_MEMORY in result.stderr and f"loading {ALIAS} failed" in result.stderr
