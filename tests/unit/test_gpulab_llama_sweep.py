"""The llama-server lab sweep: its point syntax, the command line each point runs, and its figures."""

from argparse import Namespace
from pathlib import Path

import pytest

from ollama_gpu.gpulab.llama_sweep import LlamaPoint, parse_points, request_record, server_arguments


def test_points_name_cards_and_placements():
    assert parse_points("a10/fit,a10/n20,v100/fit/mmap,14/n30/ub2048,full/fit") == [
        LlamaPoint("a10/fit", 22.5, None),
        LlamaPoint("a10/n20", 22.5, 20),
        LlamaPoint("v100/fit/mmap", 31.5, None, mmap=True),
        LlamaPoint("14GiB/n30/ub2048", 14.0, 30, ubatch=2048),
        LlamaPoint("full/fit", None, None),
    ]


@pytest.mark.parametrize("text", ["a10", "a10/n", "a10/fit/huge", "big/fit", "a10/n-1", "a10/fit/ub"])
def test_malformed_points_are_refused(text):
    with pytest.raises(ValueError):
        parse_points(text)


def _args() -> Namespace:
    return Namespace(llama_server=Path("/lab/llama-server"), num_ctx=32768, kv_cache_type="f16", margin_mib=1024)


def test_fit_leaves_the_margin_and_sets_no_layer_count():
    command = server_arguments(_args(), LlamaPoint("a10/fit", 22.5, None), Path("/m.gguf"))
    assert command[command.index("--fit") + 1] == "on"
    assert command[command.index("--fit-target") + 1] == "1024"
    assert "-ngl" not in command and "--n-cpu-moe" not in command
    assert command[command.index("--load-mode") + 1] == "none"


def test_explicit_expert_offload_turns_fitting_off():
    command = server_arguments(_args(), LlamaPoint("a10/n20", 22.5, 20, mmap=True), Path("/m.gguf"))
    assert command[command.index("--n-cpu-moe") + 1] == "20"
    assert command[command.index("-ngl") + 1] == "999"
    assert command[command.index("--fit") + 1] == "off"
    assert "--load-mode" not in command and "-ub" not in command
    assert command[command.index("-c") + 1] == "32768" and command[command.index("-np") + 1] == "1"


def test_timings_become_the_ollama_sweeps_figures():
    response = {"timings": {"prompt_n": 4096, "prompt_ms": 2048.0, "predicted_n": 32, "predicted_ms": 1000.0},
                "stop_type": "limit"}
    record = request_record(response, 4096)
    assert record["prefill_tokens_per_s"] == 2000.0
    assert record["decode_tokens_per_s"] == 32.0
    assert record["prompt_eval_duration_ns"] == 2_048_000_000 and record["context_fill"] == 4096
    assert request_record({}, 10)["prefill_tokens_per_s"] is None


def test_a_larger_physical_batch_sets_both_batch_sizes():
    command = server_arguments(_args(), parse_points("a10/n20/ub2048")[0], Path("/m.gguf"))
    assert command[command.index("-ub") + 1] == "2048" and command[command.index("-b") + 1] == "2048"
