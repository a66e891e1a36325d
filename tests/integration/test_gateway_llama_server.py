"""The team endpoint in front of llama-server: the gateway container the program registers for a
local stack with server.engine llama-server, in front of the pinned llama-server (built here for
the CPU) on loopback, serving the tiny model.

llama-server speaks the OpenAI-compatible API only; the gateway forwards /v1 and /health and
answers 404 for the rest, /slots above all, which shows every slot's prompt: other people's
conversations. llama-server logs no line per HTTP request, but one "launch_slot_" line per
completion it starts: "never reaches the server" is counted there for completions, and the
gateway's own 404 body tells its refusal from the server's.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from tests.integration import tiny_model
from tests.integration.gateway_rig import Gateway, running_gateway
from tests.integration.llama_server import LlamaServer, llama_server_binary, running_llama_server  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

ALIAS = "tiny:gateway"
KEY = "L" * 20 + "lama_server-key-0123"
WRONG_KEY = "w" * 40


@pytest.fixture(scope="module")
def llama(llama_server_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:  # noqa: F811
    workdir = tmp_path_factory.mktemp("llama-gateway")
    model = tiny_model.write_tiny_gguf(workdir / "tiny.gguf")
    with running_llama_server(llama_server_binary, model, ["--alias", ALIAS, "--ctx-size", "2048", "--parallel", "2"],
                              workdir / "server.log") as server:
        yield server


@pytest.fixture(scope="module")
def gateway(llama: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(urlsplit(llama.url).port, (KEY,), tmp_path_factory.mktemp("gateway"), engine="llama-server") as gateway:
        yield gateway


def _completions_started(server: LlamaServer) -> int:
    return server.log.count("launch_slot_")


def _client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0,
                         http_client=httpx.Client(verify=gateway.tls()))


def test_the_openai_client_streams_a_chat_through_the_gateway_with_a_key(gateway: Gateway, llama: LlamaServer) -> None:
    client = _client(gateway, KEY)
    assert [model.id for model in client.models.list()] == [ALIAS]
    before = _completions_started(llama)
    chunks = list(client.chat.completions.create(
        model=ALIAS, messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=8,
    ))
    assert len(chunks) > 1 and chunks[-1].choices[0].finish_reason is not None
    assert _completions_started(llama) == before + 1, "the server logs the completion it ran"


def test_a_wrong_key_is_an_authentication_error_that_never_reaches_the_server(gateway: Gateway, llama: LlamaServer) -> None:
    before = _completions_started(llama)
    with pytest.raises(openai.AuthenticationError):
        _client(gateway, WRONG_KEY).chat.completions.create(model=ALIAS, messages=[{"role": "user", "content": "hi"}])
    assert _completions_started(llama) == before


@pytest.mark.parametrize("method, path", [
    ("GET", "/slots"), ("POST", "/slots/0?action=erase"), ("GET", "/props"), ("POST", "/props"), ("GET", "/metrics"),
    ("POST", "/completion"), ("POST", "/tokenize"), ("POST", "/api/chat"), ("GET", "/"),
])
def test_the_servers_own_endpoints_are_not_served_even_with_a_key(gateway: Gateway, llama: LlamaServer, method: str, path: str) -> None:
    before = _completions_started(llama)
    response = httpx.request(method, f"{gateway.url}{path}", headers={"Authorization": f"Bearer {KEY}"},
                             verify=gateway.tls(), json={"prompt": "hi", "content": "hi"})
    assert (response.status_code, response.text) == (404, "not served through the gateway")
    assert _completions_started(llama) == before


def test_health_is_served_for_clients_that_wait_for_the_model(gateway: Gateway, llama: LlamaServer) -> None:
    response = httpx.get(f"{gateway.url}/health", headers={"Authorization": f"Bearer {KEY}"}, verify=gateway.tls())
    assert response.status_code == 200 and json.loads(response.text) == {"status": "ok"}
