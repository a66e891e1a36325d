"""The parts of scripts/bench and scripts/smoke that need no server: the synthetic prompts, their
sizing, the run checks, the planner coupling, the table and the stack defaults."""

import argparse
import pytest

from ollama_gpu import bench
from ollama_gpu.bench import PromptSizer, SizeResult, Run, format_table, planned_bounds, run_notes, synthetic_prompt, ttft_verdict
from ollama_gpu.errors import UserError
from ollama_gpu.generation_stats import Spread
from ollama_gpu.smoke import add_target_arguments, load_stack, resolve_target


def test_a_synthetic_prompt_has_exactly_the_words_asked_for_and_is_reproducible() -> None:
    prompt = synthetic_prompt(500, seed=7)
    assert len(prompt.split()) == 500
    assert prompt == synthetic_prompt(500, seed=7)
    assert prompt.count(".") > 20, "sentences, not a word list"


def test_prompts_of_different_seeds_differ_from_their_first_word() -> None:
    openings = {synthetic_prompt(50, seed).split()[0] for seed in range(1, 200)}
    assert len(openings) == 199


def test_the_sizer_guesses_first_and_then_pools_what_the_server_counted() -> None:
    sizer = PromptSizer()
    assert sizer.words_for(1300) == 1000
    sizer.learn(words=100, measured_tokens=400)
    sizer.learn(words=300, measured_tokens=1000)
    assert sizer.tokens_per_word == 3.5
    assert sizer.words_for(1024) == 293
    assert sizer.expected_tokens(10) == 35


def test_a_run_is_flagged_when_the_prompt_was_cut_or_partly_cached() -> None:
    assert run_notes(prompt_tokens=1000, expected_tokens=1020, num_ctx=8192) == []
    assert "truncated" in run_notes(prompt_tokens=8192, expected_tokens=9000, num_ctx=8192)[0]
    assert "prompt cache" in run_notes(prompt_tokens=12, expected_tokens=1020, num_ctx=8192)[0]


def test_ttft_fits_the_client_timeout_only_when_the_slowest_run_does() -> None:
    assert ttft_verdict(Spread(100, 90, 299), 300) == "fits"
    assert ttft_verdict(Spread(100, 90, 301), 300) == "exceeds"
    assert ttft_verdict(None, 300) is None


@pytest.fixture
def a10():
    return load_stack("a10")


def test_the_a10_stack_runs_llama_server_and_its_bounds_are_that_plan(a10) -> None:
    # Pulumi.a10.yaml picks llama-server (the GPU lab's engines table); the planner's llama-server
    # figures for it (planner/llamacpp_speed.py, derived A10 figures) replace Ollama's below.
    assert a10.server.engine == "llama-server"
    bounds = planned_bounds(a10)
    assert round(bounds["decode_tokens_per_s"], 1) == 84.6
    assert bounds["prefill_tokens_per_s"] == pytest.approx(407.5, abs=0.1)
    assert bounds["max_prompt_tokens"] == 12288


def test_bounds_are_the_a10_stack_plan_on_ollama(a10) -> None:
    a10 = a10.model_copy(update={"server": a10.server.model_copy(update={"engine": "ollama"})})
    # The a10 stack on Ollama (q8_0 KV, 32K, op offload): 31 blocks on the GPU, decode bound 56.0 tokens/s.
    # Prefill (planner/prefill.py, derived A10 figures) for a whole-context prompt: 64 batches each
    # copy the 17 host blocks, 17 x 662,848,512 B, plus their q8_0 KV (1088 B per cell per layer,
    # 512 x (1 + ... + 64) cells) = 740.9 GB at 7.0 GB/s = 105.8 s; GPU 7.9 x (157.4 µs x 32768 +
    # 1.19 ns x 32768²) = 50.8 s; 32768 / 156.7 s = 209.1 tokens/s. Timely: 209.1 x 300 s, more than
    # the context, so the prompt ceiling is num_ctx - num_predict = 32768 - 20480 = 12288.
    bounds = planned_bounds(a10)
    assert round(bounds["decode_tokens_per_s"], 1) == 56.0
    assert bounds["prefill_tokens_per_s"] == pytest.approx(209.1, abs=0.1)
    assert bounds["max_prompt_tokens"] == 12288


def test_a_model_the_planner_does_not_know_has_no_bounds(a10) -> None:
    unknown = a10.model_copy(update={"model": a10.model.model_copy(update={"base": "someone/else:7b"})})
    assert planned_bounds(unknown) is None


def _run(prompt_tokens: int, ttft_s: float, prefill: float, decode: float) -> Run:
    return Run(seed=1, words=100, prompt_tokens=prompt_tokens, ttft_s=ttft_s, prefill_tokens_per_s=prefill,
               decode_tokens_per_s=decode, generated_tokens=64, load_s=0.0)  # fmt: skip


def _report(plan, sizes) -> dict:
    return {
        "url": "http://127.0.0.1:11434", "version": "0.24.0", "model": "qwen3-30b-a3b-2507-q8:ctx32k",
        "num_ctx": 32768, "num_predict": 64, "repeats": 2, "client_timeout_s": 300, "plan": plan,
        "sizes": [bench.plan_notes(size.to_dict(300), plan) for size in sizes],
    }  # fmt: skip


def test_the_table_sets_the_plan_beside_the_measurements() -> None:
    plan = {"decode_tokens_per_s": 31.5, "prefill_tokens_per_s": 40.0, "max_prompt_tokens": 12000}
    measured = SizeResult(4096, runs=[_run(4100, 110.0, 38.0, 29.0), _run(4090, 120.0, 35.0, 30.0)])
    too_long = SizeResult(12288, runs=[_run(12300, 320.0, 38.5, 27.0)])
    lines = format_table(_report(plan, [measured, too_long])).splitlines()
    assert lines[0].startswith("Ollama 0.24.0 at http://127.0.0.1:11434, model qwen3-30b-a3b-2507-q8:ctx32k")
    assert "vs 300 s timeout" in lines[1]
    assert "prefill tok/s (plan ~40.0)" in lines[1] and "decode tok/s (plan ≤31.5)" in lines[1]
    assert lines[2].split()[:8] == ["4096", "4,095", "(4,090–4,100)", "115", "(110–120)", "fits", "36.5", "(35.0–38.0)"]
    assert "exceeds" in lines[3] and "above the plan's prompt ceiling of 12000 tokens" in lines[3]


def test_the_largest_measured_prompt_is_offered_as_the_prefill_override() -> None:
    sizes = [SizeResult(1024, runs=[_run(1024, 1.0, 500.0, 20.0)]),
             SizeResult(12288, runs=[_run(12300, 60.0, 205.0, 15.0), _run(12290, 61.0, 201.0, 15.0)])]
    report = _report(None, sizes)
    assert bench.measured_prefill_override(report) == 203.0
    assert format_table(report).splitlines()[-1].endswith("hardware.prefillTokensPerSecond 203")


def test_without_a_plan_the_headers_are_plain() -> None:
    header = format_table(_report(None, [SizeResult(1024, runs=[_run(1024, 1.0, 500.0, 20.0)])])).splitlines()[1]
    assert "plan" not in header


def _target(*argv: str):
    parser = argparse.ArgumentParser()
    add_target_arguments(parser, "timeout")
    return resolve_target(parser.parse_args(argv))


def test_a_remote_stack_is_reached_through_the_tunnel_it_names() -> None:
    target = _target("--stack", "a10")
    assert target.url == "http://127.0.0.1:11434"
    assert target.model == "qwen3-30b-a3b-2507-q8:ctx32k" and target.is_stack_alias
    assert target.timeout_s == 300
    assert "ssh -N -o ExitOnForwardFailure=yes -L 11434:127.0.0.1:11434 -p 22 -- ubuntu@203.0.113.10" in target.unreachable_hint


def test_an_explicit_url_and_model_override_the_stack() -> None:
    target = _target("--stack", "a10", "--url", "http://10.0.0.5:8080/", "--model", "other:tag", "--timeout", "42")
    assert (target.url, target.model, target.timeout_s) == ("http://10.0.0.5:8080", "other:tag", 42)
    assert not target.is_stack_alias
    assert "ssh" not in target.unreachable_hint


def test_an_unknown_stack_names_the_ones_that_exist() -> None:
    with pytest.raises(UserError, match="no Pulumi.nope.yaml.*a10.*local.*v100"):
        _target("--stack", "nope")
