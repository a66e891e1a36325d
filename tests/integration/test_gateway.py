"""The team endpoint against real parts: Caddy 2.6.2 (Debian's package in the stand-in for the
official caddy image) with the Caddyfile the program renders, in front of a real Ollama server of
the pinned version on loopback, with the CA root read by the script the stack runs.

Clients are the official `ollama` client and plain HTTPS calls to the OpenAI-compatible /v1 API,
both verifying TLS against the exported root only. Ollama's debug log has one [GIN] line per
request it answers, so "never reaches Ollama" is counted there.
"""

import json
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import ollama
import pytest

from ollama_gpu.gateway_config import CA_ROOT_PATH, GatewayConfig, render_caddyfile
from ollama_gpu.shell import script_command
from tests.integration import harness
from tests.integration.native_server import NativeOllama, native_ollama  # noqa: F401 (the fixture)

KEY_A = "a" * 16 + "A1_-" * 4 + "0123456789abcdef"
KEY_B = "ZyXw" * 10
WRONG_KEY = "w" * 40
SITE = "127.0.0.1"


@dataclass
class Gateway:
    url: str
    ca_file: Path
    ca_root: str
    container: str
    volume: str
    image: str
    caddyfile: Path
    port: int

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def _start(image: str, name: str, volume: str, caddyfile: Path) -> None:
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--label", harness.RESOURCE_PREFIX, "--network", "host",
         "-v", f"{caddyfile}:/etc/caddy/Caddyfile:ro", "-v", f"{volume}:/data", image],
        check=True, capture_output=True,
    )


def _read_ca_root(container: str) -> str:
    """Runs scripts/host/gateway-ca-root.sh exactly as the stack's local command does."""
    command = script_command("host/gateway-ca-root.sh", {
        "CONTAINER_NAME": container, "CA_ROOT_PATH": CA_ROOT_PATH, "WAIT_SECONDS": 60,
    }, "gateway-ca-root")
    result = subprocess.run(["sh", "-c", command.line], input=command.stdin, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _render(path: Path, port: int, upstream: str, keys: tuple[str, ...]) -> None:
    path.write_text(render_caddyfile(GatewayConfig(SITE, port, SITE, upstream, keys)))


@pytest.fixture(scope="module")
def gateway(native_ollama: NativeOllama, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:  # noqa: F811
    harness.require(harness.docker_answers(), "no Docker daemon answers (scripts/dev/install-prerequisites.sh sets one up)")
    image = harness.run_dev_script("build-gateway-image.sh")
    workdir = tmp_path_factory.mktemp("gateway")
    port = harness.free_port()
    suffix = uuid.uuid4().hex[:8]
    container, volume = f"{harness.RESOURCE_PREFIX}-gateway-{suffix}", f"{harness.RESOURCE_PREFIX}-gateway-data-{suffix}"
    caddyfile = workdir / "Caddyfile"
    _render(caddyfile, port, native_ollama.url, (KEY_A, KEY_B))
    _start(image, container, volume, caddyfile)
    try:
        root = _read_ca_root(container)
        ca_file = workdir / "ca-root.crt"
        ca_file.write_text(root)
        yield Gateway(f"https://{SITE}:{port}", ca_file, root, container, volume, image, caddyfile, port)
    finally:
        harness.remove_containers([container])
        subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True, check=False)


def _requests_seen(server: NativeOllama) -> int:
    return server.log_path.read_text(errors="replace").count("[GIN]")


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_ollama_client_streams_a_chat_through_the_gateway_with_a_key(gateway: Gateway, native_ollama: NativeOllama) -> None:  # noqa: F811
    client = ollama.Client(host=gateway.url, headers=_bearer(KEY_A), verify=gateway.tls())
    assert native_ollama.alias in [model.model for model in client.list().models]
    chunks = list(client.chat(model=native_ollama.alias, messages=[{"role": "user", "content": "hi"}],
                              stream=True, options={"num_predict": 8}))
    assert len(chunks) > 1, "a streamed answer arrives in several chunks"
    assert chunks[-1].done


def test_openai_compatible_api_streams_server_sent_events_with_the_second_key(gateway: Gateway, native_ollama: NativeOllama) -> None:  # noqa: F811
    with httpx.Client(base_url=f"{gateway.url}/v1", headers=_bearer(KEY_B), verify=gateway.tls()) as client:
        models = client.get("/models")
        assert models.status_code == 200
        assert native_ollama.alias in [model["id"] for model in models.json()["data"]]
        request = {"model": native_ollama.alias, "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 8}
        with client.stream("POST", "/chat/completions", json=request) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert len(chunks) > 1 and all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)


@pytest.mark.parametrize("headers", [
    {}, _bearer(WRONG_KEY), {"Authorization": KEY_A}, {"Authorization": f"Basic {KEY_A}"},
    _bearer(KEY_A + "x"), _bearer(KEY_A[:-1]), {"X-Api-Key": KEY_A},
], ids=["missing", "wrong", "no-scheme", "basic-scheme", "longer", "shorter", "other-header"])
def test_a_request_without_a_valid_key_gets_401_and_never_reaches_ollama(gateway: Gateway, native_ollama: NativeOllama, headers: dict[str, str]) -> None:  # noqa: F811
    before = _requests_seen(native_ollama)
    with httpx.Client(base_url=gateway.url, headers=headers, verify=gateway.tls()) as client:
        for method, path in (("GET", "/api/tags"), ("POST", "/api/chat"), ("POST", "/v1/chat/completions"), ("GET", "/")):
            assert client.request(method, path, json={"model": native_ollama.alias}).status_code == 401
    assert _requests_seen(native_ollama) == before


def test_plain_http_to_the_gateway_port_is_refused(gateway: Gateway, native_ollama: NativeOllama) -> None:  # noqa: F811
    before = _requests_seen(native_ollama)
    response = httpx.get(f"http://{SITE}:{gateway.port}/api/tags", headers=_bearer(KEY_A))
    assert response.status_code == 400
    assert _requests_seen(native_ollama) == before


def test_the_gateway_certificate_is_not_trusted_without_the_exported_root(gateway: Gateway) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{gateway.url}/api/version", headers=_bearer(KEY_A))


def test_a_revoked_key_gets_401_after_rotation_and_the_ca_root_stays(gateway: Gateway, native_ollama: NativeOllama) -> None:  # noqa: F811
    """Rotation as the stack does it: a new Caddyfile and a new gateway container on the same data
    volume; Ollama is not touched. Runs last in this module: it leaves only KEY_A admitted."""
    _render(gateway.caddyfile, gateway.port, native_ollama.url, (KEY_A,))
    harness.remove_containers([gateway.container])
    _start(gateway.image, gateway.container, gateway.volume, gateway.caddyfile)
    assert _read_ca_root(gateway.container) == gateway.ca_root
    with httpx.Client(base_url=gateway.url, verify=gateway.tls()) as client:
        for _ in range(100):  # the new container may still be binding its port
            try:
                client.get("/api/version", headers=_bearer(KEY_A))
                break
            except httpx.TransportError:
                time.sleep(0.1)
        before = _requests_seen(native_ollama)
        assert client.get("/api/tags", headers=_bearer(KEY_B)).status_code == 401
        assert _requests_seen(native_ollama) == before
        assert client.get("/api/tags", headers=_bearer(KEY_A)).status_code == 200
