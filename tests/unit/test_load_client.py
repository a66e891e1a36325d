"""The load benchmark's client side without a server: the API key's path from the environment to
the header (never to output), URLs, the preflight's one-line errors, and a level's accounting of
every request against a scripted transport (httpx.MockTransport) that fails some of them."""

import itertools
import json
import os
import signal
import time
import threading

import httpx
from hypothesis import given, settings, strategies as st
import pytest

from ollama_gpu import bench, load
from ollama_gpu.errors import UserError
from ollama_gpu.load_protocols import APIS
from ollama_gpu.settings import Settings
from ollama_gpu.server_api import ModelMissing
from ollama_gpu.smoke import ServerUnreachable, Target
from tests.unit.test_load_stats import NATIVE_STREAM, OPENAI_STREAM

KEY = "k3y_" + "a" * 40
URL = "http://ollama.test:11434"


def target(url=URL, model="tiny:bench"):
    return Target(url, model, 30.0, Settings.model_construct(), "Is the server running?")


def client(handler, credentials=load.Credentials("OLLAMA_GPU_API_KEY", KEY)):
    headers = {"Authorization": f"Bearer {credentials.api_key}"} if credentials.api_key else {}
    return httpx.Client(base_url=URL, headers=headers, transport=httpx.MockTransport(handler))


def test_the_key_comes_from_the_named_variable_and_is_checked_as_a_bearer_token():
    assert load.read_api_key("TEAM_KEY", required=True, environ={"TEAM_KEY": KEY}) == load.Credentials("TEAM_KEY", KEY)
    assert load.read_api_key("OLLAMA_GPU_API_KEY", required=False, environ={}).api_key is None
    with pytest.raises(UserError, match="TEAM_KEY, which is not set"):
        load.read_api_key("TEAM_KEY", required=True, environ={})
    with pytest.raises(UserError, match="not an environment variable name"):
        load.read_api_key("A-B", required=True, environ={})


@pytest.mark.parametrize("bad", ["abc\r\nX-Injected: 1", "has space", "quote\"d", "tab\tkey", "ünï"])
def test_a_key_that_could_break_the_header_is_refused_without_being_echoed(bad):
    with pytest.raises(UserError) as refused:
        load.read_api_key("TEAM_KEY", required=True, environ={"TEAM_KEY": bad})
    assert bad not in str(refused.value) and "TEAM_KEY" in str(refused.value)


def test_the_key_is_never_a_command_line_argument():
    parser = bench.argparse.ArgumentParser()
    load.add_load_arguments(parser, int)
    assert "--api-key" not in parser._option_string_actions


def test_urls_are_http_and_an_openai_base_ending_in_v1_is_its_root():
    openai, ollama = APIS["openai"], APIS["ollama"]
    assert load.base_url("http://router:4000/v1/", openai) == "http://router:4000"
    assert load.base_url("https://gw.example:8443", openai) == "https://gw.example:8443"
    assert load.base_url("http://h:11434/", ollama) == "http://h:11434"
    for bad in ("ftp://h/", "h:11434", "file:///etc/passwd"):
        with pytest.raises(UserError):
            load.base_url(bad, ollama)


def test_preflight_turns_refusals_into_one_line_naming_the_variable_not_the_key():
    def refuse(request):
        return httpx.Response(401, json={"error": f"invalid key {request.headers['authorization']}"})

    with pytest.raises(UserError) as refused:
        load.preflight(client(refuse), APIS["openai"], target(), load.Credentials("TEAM_KEY", KEY))
    assert "TEAM_KEY" in str(refused.value) and KEY not in str(refused.value)


def test_preflight_finds_a_missing_model_and_a_server_of_the_other_api():
    tags = client(lambda request: httpx.Response(200, json={"models": [{"name": "other:1", "model": "other:1"}]}))
    with pytest.raises(ModelMissing):
        load.preflight(tags, APIS["ollama"], target(), load.Credentials("K", None))
    not_found = client(lambda request: httpx.Response(404, text="404 page not found"))
    with pytest.raises(ServerUnreachable, match="try --api ollama"):
        load.preflight(not_found, APIS["openai"], target(), load.Credentials("K", None))


def test_preflight_accepts_an_untagged_name_listed_as_latest():
    tags = client(lambda request: httpx.Response(200, json={"models": [{"name": "team:latest", "model": "team:latest"}]}))
    load.preflight(tags, APIS["ollama"], target(model="team"), load.Credentials("K", None))


class ScriptedServer:
    """Answers generate requests in turn: a stream, an HTTP 503, a dropped connection, an error in
    the stream; records the Authorization header it saw."""

    def __init__(self, stream: str, broken: str):
        self.stream, self.broken, self.turn, self.lock, self.authorizations = stream, broken, itertools.count(), threading.Lock(), set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            turn = next(self.turn)
            self.authorizations.add(request.headers.get("authorization"))
        if turn % 4 == 1:
            return httpx.Response(503, json={"error": f"server busy ({KEY})"})
        if turn % 4 == 2:
            raise httpx.ReadError("connection reset", request=request)
        if turn % 4 == 3:
            return httpx.Response(200, text=self.broken)
        return httpx.Response(200, text=self.stream)


BROKEN = {
    "ollama": '{"response":"a","done":false}\n{"error":"runner crashed"}\n',
    "openai": 'data: {"choices":[{"delta":{"content":"a"}}]}\ndata: {"error":{"message":"runner crashed"}}\n',
}


@pytest.mark.parametrize(("api", "stream"), [("ollama", NATIVE_STREAM), ("openai", OPENAI_STREAM)])
def test_a_level_accounts_for_every_request_with_its_reason(api, stream):
    server = ScriptedServer(stream, BROKEN[api])
    credentials = load.Credentials("K", KEY)
    spec = load.LoadSpec(APIS[api], [3], requests_per_stream=4, prompt_tokens=8, num_predict=3)
    run = load.LoadRun(client(server, credentials), spec, target(), credentials, lambda words, seed: f"{seed}." + " word" * words, 8)
    bar = bench.ProgressBar(12, stream=open("/dev/null", "w"))
    summary, outcomes = run.level(3, load.Progress(bar))
    assert (summary.requests, summary.succeeded, summary.failed) == (12, 3, 9)
    assert summary.failures == {
        "HTTP 503: server busy (***)": 3,
        "connection failed: ReadError": 3,
        "runner crashed": 3,
    }
    assert sorted(outcome.stream for outcome in outcomes) == [1] * 4 + [2] * 4 + [3] * 4
    assert summary.generated_tokens == 9 and bar.done == 12
    assert server.authorizations == {f"Bearer {KEY}"}


def test_the_table_lists_failures_by_reason():
    report = {
        "api": "openai", "url": URL, "model": "m", "requests_per_stream": 2, "prompt_tokens_target": 512, "num_predict": 64,
        "levels": [load.summarize(2, [load.failed(1, 0, 1, "HTTP 503: busy")] * 2 + []).to_dict()],
    }  # fmt: skip
    table = load.format_load_table(report).splitlines()
    assert table[1].split()[:3] == ["concurrency", "requests", "failed"]
    assert table[2].split()[:3] == ["2", "2", "2"] and table[2].endswith("2x HTTP 503: busy")


@pytest.mark.parametrize(
    "args",
    [["--concurrency", "2", "--sizes", "1024"], ["--concurrency", "2", "--repeat", "2"], ["--api", "openai"],
     ["--api-key-env", "TEAM_KEY"], ["--concurrency", "0"], ["--concurrency", "1,x"]],
)  # fmt: skip
def test_flags_of_one_mode_are_refused_in_the_other(args, capsys):
    with pytest.raises(SystemExit) as exited:
        bench.main(args)
    assert exited.value.code == 2


def test_the_warm_up_sizes_the_prompts_in_the_servers_tokens():
    asked = []

    def server(request):
        prompt = json.loads(request.content)["prompt"]
        asked.append(len(prompt.split()) - 1)
        # This model's tokenizer: 3 tokens per word.
        count = 3 * asked[-1]
        return httpx.Response(200, text=f'{{"response":"a","done":false}}\n{{"done":true,"eval_count":1,"prompt_eval_count":{count}}}\n')

    spec = load.LoadSpec(APIS["ollama"], [1], requests_per_stream=1, prompt_tokens=600, num_predict=1)
    run = load.LoadRun(client(server), spec, target(), load.Credentials("K", None), lambda words, seed: f"{seed}." + " w" * words, 462)
    run.warm_up()
    run.request(1, time.monotonic)
    assert asked == [462, 200]  # 462 words were 1386 tokens; 600 tokens are 200 words


@settings(max_examples=300, deadline=None)
@given(key=st.text(min_size=1, max_size=60) | st.from_regex(r"[A-Za-z0-9._~+/-]{1,40}={0,2}", fullmatch=True))
def test_fuzz_a_key_either_is_a_bearer_token_or_is_refused_unseen(key):
    """Whatever the variable holds, the header gets a bearer token or nothing, and the key is in no message."""
    try:
        credentials = load.read_api_key("TEAM_KEY", required=True, environ={"TEAM_KEY": key})
    except UserError as refused:
        assert len(key) < 8 or key not in str(refused)  # a one-character "key" may be any letter of the message
        return
    request = client(lambda request: httpx.Response(200), credentials).build_request("GET", "/")
    header = request.headers["authorization"]
    assert header == f"Bearer {key}" and load.BEARER_TOKEN.fullmatch(key)
    assert not set(key) & set("\r\n\t\"\\,; ")


def test_ctrl_c_stops_every_stream_after_its_answer_in_flight():
    sent = []
    lock = threading.Lock()

    def server(request):
        with lock:
            sent.append(request)
            both_streams_in_flight = len(sent) == 2
        if both_streams_in_flight:
            # What Ctrl-C does once the main thread waits on the streams.
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        time.sleep(1.0)  # answers in flight long after the signal, even on a busy machine
        return httpx.Response(200, text=NATIVE_STREAM)

    spec = load.LoadSpec(APIS["ollama"], [2], requests_per_stream=5, prompt_tokens=8, num_predict=3)
    run = load.LoadRun(client(server), spec, target(), load.Credentials("K", None), lambda words, seed: f"{seed}.", 1)
    # Python's own Ctrl-C handler, whatever this process inherited: a shell starting the suite in the
    # background hands it SIGINT ignored, and then no KeyboardInterrupt comes.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run.level(2, load.Progress(bench.ProgressBar(10, stream=open(os.devnull, "w"))))
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert len(sent) == 2, "each stream finishes the answer in flight and sends no other"
