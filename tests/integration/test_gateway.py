"""The team endpoint against real parts: the gateway container the program registers for a local
stack (Caddy 2.6.2 from Debian's package, in the stand-in for the official caddy image, with the
Caddyfile upload and data volume of the registered inputs), in front of a real Ollama server of
the pinned version on loopback, with the CA root read by the registered command.

Clients are the official `ollama` client and plain HTTPS calls to the OpenAI-compatible /v1 API,
both verifying TLS against the exported root only. Ollama's debug log has one [GIN] line per
request it answers, so "never reaches Ollama" is counted there.
"""

import json
import os
import subprocess
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import ollama
import openai
import pytest

from tests.integration import harness
from tests.integration.gateway_rig import SITE, Gateway, program, running_gateway, start
from tests.integration.native_server import NativeOllama, native_ollama  # noqa: F401 (the fixture)
from tests.integration.openai_stream import streamed_chat_chunks

pytestmark = pytest.mark.integration

KEY_A = "a" * 16 + "A1_-" * 4 + "0123456789abcdef"
KEY_B = "ZyXw" * 10
WRONG_KEY = "w" * 40


@pytest.fixture(scope="module")
def gateway(native_ollama: NativeOllama, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:  # noqa: F811
    with running_gateway(urlsplit(native_ollama.url).port, (KEY_A, KEY_B), tmp_path_factory.mktemp("gateway")) as gateway:
        yield gateway


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
        streamed_chat_chunks(client, native_ollama.alias)


def test_openai_client_streams_a_chat_completion_and_a_wrong_key_is_an_authentication_error(gateway: Gateway, native_ollama: NativeOllama) -> None:  # noqa: F811
    def client(key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0,
                             http_client=httpx.Client(verify=gateway.tls()))

    stream = client(KEY_A).chat.completions.create(
        model=native_ollama.alias, messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=8,
    )
    chunks = list(stream)
    assert len(chunks) > 1 and chunks[-1].choices[0].finish_reason is not None
    before = _requests_seen(native_ollama)
    with pytest.raises(openai.AuthenticationError):
        client(WRONG_KEY).models.list()
    assert _requests_seen(native_ollama) == before


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


@pytest.mark.parametrize("method, path", [
    ("POST", "/api/pull"), ("DELETE", "/api/delete"), ("POST", "/api/create"), ("POST", "/api/copy"),
    ("POST", "/api/push"), ("HEAD", "/api/blobs/sha256:" + "0" * 64), ("GET", "/"),
])
def test_model_management_is_not_served_even_with_a_key(gateway: Gateway, native_ollama: NativeOllama, method: str, path: str) -> None:  # noqa: F811
    """A key admits inference, not the power to pull, replace or delete the served model."""
    before = _requests_seen(native_ollama)
    response = httpx.request(method, f"{gateway.url}{path}", headers=_bearer(KEY_A), verify=gateway.tls(),
                             json={"model": native_ollama.alias, "name": native_ollama.alias})
    assert (response.status_code, response.text) == (404, "not served through the gateway" if method != "HEAD" else "")
    assert _requests_seen(native_ollama) == before
    assert native_ollama.alias in {model.model for model in ollama.Client(native_ollama.url).list().models}


def test_plain_http_to_the_gateway_port_is_refused(gateway: Gateway, native_ollama: NativeOllama) -> None:  # noqa: F811
    before = _requests_seen(native_ollama)
    response = httpx.get(f"http://{SITE}:{gateway.port}/api/tags", headers=_bearer(KEY_A))
    assert response.status_code == 400
    assert _requests_seen(native_ollama) == before


def test_the_gateway_certificate_is_not_trusted_without_the_exported_root(gateway: Gateway) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{gateway.url}/api/version", headers=_bearer(KEY_A))


def _load_bench(gateway: Gateway, server: NativeOllama, api: str, key: str, *trust: str) -> subprocess.CompletedProcess[str]:
    """scripts/bench --concurrency 2 through the gateway, the key in TEAM_KEY (never an argument)."""
    url = gateway.url + ("/v1" if api == "openai" else "")
    return subprocess.run(
        [harness.REPO_ROOT / "scripts" / "bench", "--stack", "local", "--url", url, "--model", server.alias, "--api", api,
         "--api-key-env", "TEAM_KEY", *trust, "--concurrency", "2", "--requests-per-stream", "2",
         "--prompt-tokens", "32", "--num-predict", "4", "--json"],
        capture_output=True, text=True, check=False, env={**os.environ, "TEAM_KEY": key},
    )  # fmt: skip


@pytest.mark.parametrize("api", ["ollama", "openai"])
def test_the_load_bench_runs_through_the_gateway_with_the_key_from_the_environment(gateway: Gateway, native_ollama: NativeOllama, api: str) -> None:  # noqa: F811
    result = _load_bench(gateway, native_ollama, api, KEY_B, "--ca-cert", str(gateway.ca_file))
    assert result.returncode == 0, result.stderr
    (level,) = json.loads(result.stdout)["levels"]
    assert (level["requests"], level["succeeded"], level["failed"]) == (4, 4, 0)
    assert KEY_B not in result.stdout + result.stderr


def test_the_load_bench_names_the_variable_not_the_key_when_the_gateway_refuses_it(gateway: Gateway, native_ollama: NativeOllama) -> None:  # noqa: F811
    before = _requests_seen(native_ollama)
    refused = _load_bench(gateway, native_ollama, "openai", WRONG_KEY, "--ca-cert", str(gateway.ca_file))
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "TEAM_KEY" in refused.stderr and "HTTP 401" in refused.stderr
    assert WRONG_KEY not in refused.stderr
    assert _requests_seen(native_ollama) == before
    untrusted = _load_bench(gateway, native_ollama, "openai", KEY_A)
    assert untrusted.returncode == 1 and "--ca-cert" in untrusted.stderr and KEY_A not in untrusted.stderr


def test_a_revoked_key_gets_401_after_rotation_and_the_ca_root_stays(gateway: Gateway, native_ollama: NativeOllama) -> None:  # noqa: F811
    """Rotation as `pulumi up` applies it: the program with one key fewer, its gateway container
    replaced on the same data volume; Ollama is not touched. Runs last in this module."""
    run = program(gateway.upstream_port, gateway.port, gateway.suffix, (KEY_A,))
    harness.remove_containers([gateway.container])
    assert start(run, gateway.image) == gateway.ca_root
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
