"""scripts/bench --concurrency, run as a user runs it, against the real Ollama of the pinned version
serving the tiny model (the native_ollama fixture), through both APIs: every request is accounted
for, each answered one is measured, and nothing else. Speed is never judged here (scripts/bench-load
prints the figures)."""

import json
import os
import subprocess
from typing import Any

import pytest

from tests.integration.harness import REPO_ROOT
from tests.integration.native_server import NativeOllama, native_ollama  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

CONCURRENCY = 2
REQUESTS_PER_STREAM = 2
NUM_PREDICT = 8


def run_load(server: NativeOllama, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REPO_ROOT / "scripts" / "bench", "--stack", "local", "--model", server.alias,
         "--concurrency", str(CONCURRENCY), "--requests-per-stream", str(REQUESTS_PER_STREAM),
         "--prompt-tokens", "64", "--num-predict", str(NUM_PREDICT), *args],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["ollama", "openai"])
def load_report(request: pytest.FixtureRequest, native_ollama: NativeOllama) -> dict[str, Any]:  # noqa: F811
    url = native_ollama.url + ("/v1" if request.param == "openai" else "")
    result = run_load(native_ollama, "--api", request.param, "--url", url, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_every_request_is_accounted_for(load_report: dict[str, Any]) -> None:
    (level,) = load_report["levels"]
    assert level["concurrency"] == CONCURRENCY
    assert level["requests"] == CONCURRENCY * REQUESTS_PER_STREAM == len(level["outcomes"])
    assert level["succeeded"] + level["failed"] == level["requests"]
    assert level["failed"] == 0 and level["failures"] == {}
    streams = sorted(outcome["stream"] for outcome in level["outcomes"])
    assert streams == [stream for stream in range(1, CONCURRENCY + 1) for _ in range(REQUESTS_PER_STREAM)]


def test_each_answer_is_measured_from_the_servers_counts(load_report: dict[str, Any]) -> None:
    (level,) = load_report["levels"]
    for outcome in level["outcomes"]:
        assert outcome["error"] is None and not outcome["tokens_counted_from_chunks"]
        assert outcome["generated_tokens"] == NUM_PREDICT and outcome["prompt_tokens"] > 0
        assert 0 < outcome["ttft_s"] <= outcome["finished_s"] - outcome["started_s"]
        assert outcome["decode_tokens_per_s"] > 0
    assert level["generated_tokens"] == NUM_PREDICT * level["requests"]
    assert level["aggregate_tokens_per_s"] == pytest.approx(level["generated_tokens"] / level["wall_s"])
    assert level["ttft_p50_s"] <= level["ttft_p95_s"]
    assert level["decode_p95_tokens_per_s"] <= level["decode_p50_tokens_per_s"]


def test_the_two_streams_overlap(load_report: dict[str, Any]) -> None:
    """Concurrency is real: the second stream's first request starts before the first one's ends."""
    (level,) = load_report["levels"]
    firsts = {}
    for outcome in level["outcomes"]:
        firsts.setdefault(outcome["stream"], outcome)
    assert firsts[2]["started_s"] < firsts[1]["finished_s"] and firsts[1]["started_s"] < firsts[2]["finished_s"]


def test_the_text_table_and_the_progress_display(native_ollama: NativeOllama) -> None:  # noqa: F811
    result = run_load(native_ollama, "--url", native_ollama.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"ollama API at {native_ollama.url}, model {native_ollama.alias}")
    assert lines[1].split()[:3] == ["concurrency", "requests", "failed"]
    assert lines[2].split()[:3] == [str(CONCURRENCY), str(CONCURRENCY * REQUESTS_PER_STREAM), "0"]
    total = 1 + CONCURRENCY * REQUESTS_PER_STREAM
    assert f"] {total}/{total} concurrency {CONCURRENCY}: {total - 1}/{total - 1} requests, 0 failed" in result.stderr


def test_a_key_from_the_environment_reaches_no_output(native_ollama: NativeOllama) -> None:  # noqa: F811
    """Ollama ignores the Authorization header, so the run succeeds; the key appears nowhere."""
    key = "bench_" + "k" * 40
    env = {**os.environ, "TEAM_KEY": key}
    result = run_load(native_ollama, "--url", native_ollama.url, "--api-key-env", "TEAM_KEY", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert key not in result.stdout and key not in result.stderr
