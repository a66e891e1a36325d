"""The program's llama-server command line, run by the real llama-server of the pinned build (CPU,
native): the server starts with exactly the argv the program renders for a stack, serves the stack's
alias with the stack's context per slot and KV cache type, its own log is what the verification
parses, and scripts/smoke and scripts/bench measure it through its OpenAI-compatible API."""

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from ollama_gpu.bench import run_bench
from ollama_gpu.config_loader import load_settings
from ollama_gpu.llama_server_argv import server_arguments
from ollama_gpu.llama_verification import LOG_MARK, PROPS_MARK, compare, expected_report, parse_report, verify_llama_server
from ollama_gpu.settings import Settings
from ollama_gpu.shell import script_command
from ollama_gpu.smoke import Target, format_report, smoke
from tests.integration.llama_server import llama_server_binary, running_llama_server  # noqa: F401  (fixture)
from tests.integration.tiny_model import write_tiny_gguf

pytestmark = pytest.mark.integration

ALIAS = "tiny:llama"
NUM_CTX = 1024


def _settings(num_parallel: int) -> Settings:
    config = {
        "profile": "none",
        "server": {"engine": "llama-server", "env": {"numParallel": num_parallel}},
        "model": {"base": "tiny:base", "alias": ALIAS, "parameters": {"numCtx": NUM_CTX, "numPredict": 64, "temperature": 0.6}},
    }
    return load_settings("local", config)


@pytest.fixture(scope="module")
def served(tmp_path_factory, llama_server_binary: Path):  # noqa: F811
    workdir = tmp_path_factory.mktemp("llama-engine")
    model = write_tiny_gguf(workdir / "tiny.gguf")
    settings = _settings(num_parallel=2)
    argv = server_arguments(settings, str(model))
    # The program passes --model itself; the helper adds host and port, which the image's env sets.
    flags = argv[argv.index("--model") + 2:]
    with running_llama_server(llama_server_binary, model, flags, workdir / "server.log") as server:
        yield settings, server


def test_the_server_takes_the_programs_argv_and_serves_the_alias(served):
    settings, server = served
    models = server.get("/v1/models")
    assert ALIAS in {entry["id"] for entry in models["data"]}
    props = server.get("/props")
    assert props["default_generation_settings"]["n_ctx"] == NUM_CTX
    assert props["total_slots"] == 2


def test_the_verification_reads_the_servers_own_log(served):
    settings, server = served
    # What scripts/host/llama-server-report.sh prints: /props, then the server's log lines.
    report_text = "\n".join([PROPS_MARK, json.dumps(server.get("/props")), LOG_MARK, server.log])
    report = parse_report(report_text)
    assert report.slot_context == NUM_CTX
    assert report.kv_types == ("q8_0", "q8_0")
    assert report.memory["weights"]["cpu"] > 0 and report.memory["kv_cache"]["cpu"] > 0
    verification = compare(report, num_ctx=NUM_CTX, kv_cache_type="q8_0", planned_memory=None, tolerance=0.15)
    assert verification.ok, verification.warnings


def test_smoke_measures_a_generation_through_the_openai_api(served):
    settings, server = served
    report = smoke(Target(server.url, ALIAS, 60, settings, "is it running?"))
    assert report["server"] == "llama-server"
    assert report["generation"]["generated_tokens"] > 0 and report["generation"]["decode_tokens_per_s"] > 0
    assert report["parameters"]["num_ctx"] == NUM_CTX and report["parameters"]["temperature"] == pytest.approx(0.6)
    assert "llama-server" in format_report(report)


def test_bench_measures_each_size_that_fits(served):
    settings, server = served
    report = run_bench(Target(server.url, ALIAS, 120, settings, "is it running?"), [128, 512, 4096], 1, 16)
    assert report["server"] == "llama-server" and report["num_ctx"] == NUM_CTX
    measured = [size for size in report["sizes"] if size["runs"]]
    assert [size["target_tokens"] for size in measured] == [128, 512]
    for size in measured:
        (run,) = size["runs"]
        assert run["prompt_tokens"] > 0 and run["prefill_tokens_per_s"] > 0 and run["ttft_s"] > 0
    assert "skipped" in " ".join(report["sizes"][2]["notes"])


def _report_step(server, tmp_path: Path, expected: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """scripts/host/llama-server-report.sh as the report step runs it, against the real server: its
    /props over HTTP, and its log through a `docker logs` that prints the server's own log file
    (the server runs natively here, not in a container)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    docker.write_text(f"#!/bin/sh\ncat {shlex.quote(str(server.log_path))}\n")
    docker.chmod(0o755)
    step = script_command("host/llama-server-report.sh",
                          {"API_URL": server.url, "CONTAINER_NAME": "llama-server", **expected}, "llama-server-report")
    return subprocess.run(["/bin/sh", "-c", step.line], input=step.stdin, capture_output=True, text=True, check=False,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})


def test_the_report_step_holds_the_server_to_the_stack_under_fail_on_mismatch(served, tmp_path: Path):
    settings, server = served
    strict = settings.model_copy(update={"verification": settings.verification.model_copy(update={"fail_on_mismatch": True})})
    assert expected_report(settings) == {"EXPECTED_SLOT_CONTEXT": "", "EXPECTED_KV_TYPE": ""}
    matching = _report_step(server, tmp_path, expected_report(strict))
    assert matching.returncode == 0, matching.stderr
    assert verify_llama_server(strict, matching.stdout).ok

    other_context = _report_step(server, tmp_path, {**expected_report(strict), "EXPECTED_SLOT_CONTEXT": str(NUM_CTX * 2)})
    assert other_context.returncode == 1
    assert other_context.stderr.strip() == (
        f"ollama-gpu: the server runs n_ctx_slot = {NUM_CTX}; the stack asks for n_ctx_slot = {NUM_CTX * 2}"
        " (verification.failOnMismatch is true)")
    other_type = _report_step(server, tmp_path, {**expected_report(strict), "EXPECTED_KV_TYPE": "f16"})
    assert other_type.returncode == 1
    assert other_type.stderr.strip() == (
        "ollama-gpu: the server's KV cache is K q8_0, V q8_0; the stack asks for f16 (verification.failOnMismatch is true)")
