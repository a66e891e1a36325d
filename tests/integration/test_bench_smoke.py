"""scripts/smoke and scripts/bench, run as a user runs them, against a real Ollama server of the pinned
version serving the tiny model. They check shape and sanity, never speed: the machine is not the
GPU host and its timings say nothing about the deployment."""

import json
import math
import re
import subprocess
from typing import Any

import pytest

from ollama_gpu.pins import OLLAMA_VERSION
from tests.integration.harness import REPO_ROOT, free_port
from tests.integration.native_server import CONTEXT_LENGTH, NativeOllama, native_ollama  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

BENCH_SIZES = (256, 1024)
BENCH_REPEATS = 2
# The CPU profile's stack: its client timeout (300 s) is what TTFT is judged against.
STACK = "local"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REPO_ROOT / "scripts" / name, "--stack", STACK, *args], capture_output=True, text=True, check=False
    )


def json_report(name: str, *args: str) -> dict[str, Any]:
    result = run_script(name, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def is_rate(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def smoke_report(native_ollama: NativeOllama) -> dict[str, Any]:  # noqa: F811
    return json_report("smoke", "--url", native_ollama.url, "--model", native_ollama.alias)


@pytest.fixture(scope="module")
def bench_report(native_ollama: NativeOllama) -> dict[str, Any]:  # noqa: F811
    sizes = ",".join(map(str, BENCH_SIZES))
    return json_report(
        "bench", "--url", native_ollama.url, "--model", native_ollama.alias,
        "--sizes", sizes, "--repeat", str(BENCH_REPEATS),
    )  # fmt: skip


def test_smoke_reports_the_pinned_server_and_the_alias_parameters(smoke_report: dict[str, Any]) -> None:
    assert smoke_report["version"] == OLLAMA_VERSION
    assert smoke_report["parameters"] == {"num_ctx": CONTEXT_LENGTH, "num_predict": 64}
    assert smoke_report["details"]["family"] == "qwen3moe"


def test_smoke_measures_one_generation_and_finds_the_alias_loaded(smoke_report: dict[str, Any]) -> None:
    generation = smoke_report["generation"]
    assert generation["prompt_tokens"] > 0 and generation["generated_tokens"] > 0
    assert is_rate(generation["prefill_tokens_per_s"]) and is_rate(generation["decode_tokens_per_s"])
    assert generation["load_s"] >= 0
    assert smoke_report["loaded"]["context_length"] == CONTEXT_LENGTH


def test_smoke_text_names_server_model_and_rates(native_ollama: NativeOllama) -> None:  # noqa: F811
    result = run_script("smoke", "--url", native_ollama.url, "--model", native_ollama.alias)
    assert result.returncode == 0, result.stderr
    labels = [line.split()[0] for line in result.stdout.splitlines()]
    assert labels == ["server", "model", "parameters", "prefill", "decode", "load", "loaded"]
    assert f"Ollama {OLLAMA_VERSION} at {native_ollama.url}" in result.stdout


def test_smoke_fails_in_one_line_when_nothing_answers() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_script("smoke", "--url", url, "--model", "tiny:bench")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and f"no server answers at {url}" in result.stderr


def test_smoke_fails_in_one_line_when_the_alias_is_missing(native_ollama: NativeOllama) -> None:  # noqa: F811
    result = run_script("smoke", "--url", native_ollama.url, "--model", "absent:model")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "model 'absent:model' is not on the server" in result.stderr and native_ollama.alias in result.stderr


def test_bench_measures_every_size_on_the_alias_context(bench_report: dict[str, Any]) -> None:
    assert bench_report["version"] == OLLAMA_VERSION
    assert bench_report["num_ctx"] == CONTEXT_LENGTH
    assert bench_report["repeats"] == BENCH_REPEATS
    assert [size["target_tokens"] for size in bench_report["sizes"]] == list(BENCH_SIZES)


@pytest.mark.parametrize("index", range(len(BENCH_SIZES)))
def test_bench_runs_are_sane_and_sized_as_asked(bench_report: dict[str, Any], index: int) -> None:
    size = bench_report["sizes"][index]
    target = size["target_tokens"]
    assert len(size["runs"]) == BENCH_REPEATS
    for run in size["runs"]:
        assert run["ttft_s"] > 0
        assert is_rate(run["prefill_tokens_per_s"]) and is_rate(run["decode_tokens_per_s"])
        assert run["notes"] == [], "a fresh prompt must be prefilled whole"
    seeds = [run["seed"] for run in size["runs"]]
    assert len(set(seeds)) == len(seeds)
    summary = size["summary"]
    assert abs(summary["prompt_tokens"]["median"] - target) <= 0.10 * target
    assert summary["ttft_s"]["min"] <= summary["ttft_s"]["median"] <= summary["ttft_s"]["max"]
    assert size["ttft_vs_client_timeout"] in ("fits", "exceeds")
    assert size["notes"] == []


def test_bench_table_has_its_header_and_skips_what_cannot_fit(native_ollama: NativeOllama) -> None:  # noqa: F811
    too_big = CONTEXT_LENGTH * 2
    result = run_script(
        "bench", "--url", native_ollama.url, "--model", native_ollama.alias, "--sizes", f"256,{too_big}", "--repeat", "1"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Ollama {OLLAMA_VERSION} at {native_ollama.url}, model {native_ollama.alias}")
    assert re.split(r"\s{2,}", lines[1])[:3] == ["size", "prompt tokens", "TTFT s"]
    assert "prefill tok/s" in lines[1] and "decode tok/s" in lines[1] and "vs 300 s timeout" in lines[1]
    assert lines[2].startswith("256 ")
    assert re.match(rf"{too_big}\s+skipped: ", lines[3]) and f"exceed num_ctx {CONTEXT_LENGTH}" in lines[3]
