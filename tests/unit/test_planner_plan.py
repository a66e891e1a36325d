"""build_plan, its JSON and table, the context budget, the findings and the command line."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from ollama_gpu.planner.budget import context_budget
from ollama_gpu.planner.catalog import alternatives, catalog_geometry
from ollama_gpu.planner.cli import main
from ollama_gpu.planner.hardware import A10, NONE, PROFILES, V100
from ollama_gpu.planner.plan import PlanInputs, build_plan, format_plan_table
from ollama_gpu.planner.units import GIB, MIB

Q8 = "qwen3:30b-a3b-thinking-2507-q8_0"
Q4 = "qwen3:30b-a3b-thinking-2507-q4_K_M"
REPO = Path(__file__).resolve().parents[2]


def recipe_plan(profile=A10, model=Q8, **settings):
    defaults = {"num_ctx": 32768, "num_predict": 20480, "gpu_overhead": GIB, "alternatives": alternatives(model)}
    return build_plan(PlanInputs.for_profile(profile, catalog_geometry(model), **{**defaults, **settings}))


def test_json_has_the_agreed_keys_with_integer_bytes():
    data = recipe_plan().to_dict()
    assert data["layers"] == {"on_gpu": 30, "total": 48, "output_on_gpu": False, "offloaded": 30, "offloaded_of": 49}
    for part in ("weights", "kv_cache", "graph"):
        assert set(data["memory"][part]) == {"gpu", "cpu"}
        assert all(isinstance(v, int) for v in data["memory"][part].values())
    assert isinstance(data["memory"]["total"], int)
    assert isinstance(data["speed"]["decode_tokens_per_s_bound"], float)
    assert data["context"]["max_prompt_tokens"] == 12000
    assert isinstance(data["warnings"], list) and data["errors"] == []
    assert data["assumptions"]["prefill_tokens_per_s"] == 40.0
    assert data["assumptions"]["notes"] == list(A10.assumptions)
    json.dumps(data)


def test_decode_bounds_sit_above_the_measured_speeds():
    # A10, 30 blocks on the GPU, 4096 tokens of f16 KV read per token:
    # GPU 30 x 61,228,032 + 30 x 8,388,608 = 2,088,499,200 B / 600 GB/s = 3.48 ms;
    # CPU 18 x 61,228,032 + output 330,620,928 + 18 x 8,388,608 = 1,583,720,448 B / 100 GB/s
    # = 15.84 ms; 1 / 19.32 ms = 51.8 tokens/s.
    assert recipe_plan().decode.tokens_per_s == pytest.approx(51.77, abs=0.01)
    # field-notes measurements: A10 hybrid Q8_0 with q8_0 KV 30 tokens/s, V100 Q8_0 24, V100 Q4 80.
    assert 30 <= recipe_plan(kv_cache_type="q8_0").decode.tokens_per_s < 2 * 30
    assert 24 <= recipe_plan(V100).decode.tokens_per_s < 3 * 24
    assert 80 <= recipe_plan(V100, Q4).decode.tokens_per_s


def test_context_budget_follows_the_recipe():
    # 40 tokens/s x 300 s = 12000; 12000 + 20480 <= 32768; 32768 - 12000 = 20768 would also fit.
    budget = context_budget(num_ctx=32768, num_predict=20480, prefill_tokens_per_s=40, client_timeout_s=300)
    assert (budget.timely_prompt_tokens, budget.max_prompt_tokens, budget.suggested_num_predict) == (12000, 12000, 20768)
    assert budget.warnings == ()


def test_context_budget_warns_when_prompt_and_answer_overflow():
    budget = context_budget(num_ctx=32768, num_predict=24000, prefill_tokens_per_s=40, client_timeout_s=300)
    assert budget.max_prompt_tokens == 8768
    assert "num_predict 20768 would fit" in budget.warnings[0]
    unbounded = context_budget(num_ctx=32768, num_predict=-1, prefill_tokens_per_s=40, client_timeout_s=300)
    assert unbounded.max_prompt_tokens == 12000 and "unbounded" in unbounded.warnings[0]
    fast = context_budget(num_ctx=8192, num_predict=4096, prefill_tokens_per_s=1000, client_timeout_s=300)
    assert (fast.max_prompt_tokens, fast.suggested_num_predict, fast.warnings) == (4096, None, ())


def test_cheaper_build_is_suggested_when_it_fits_in_vram():
    assert any(w.startswith(Q4) and "fits entirely in VRAM" in w for w in recipe_plan().warnings)
    assert recipe_plan(model=Q4).warnings == ()


def test_host_ram_findings():
    # Host share: weights 12,592,506,880 + KV 1,207,959,552 + graph 88,080,384 (84 MiB) =
    # 13,888,546,816 B, 99.2% of 14 GB and more than 12 GB.
    tight = recipe_plan(host_ram=14 * 10**9)
    assert any("host RAM use 99%" in w for w in tight.warnings)
    too_small = recipe_plan(host_ram=12 * 10**9)
    assert too_small.errors and too_small.errors[0].startswith("model cannot load")


def test_nothing_on_the_gpu_is_a_warning():
    plan = recipe_plan(gpu_free_vram=400 * MIB)
    assert "no layer fits on the GPU: the model runs on the CPU only" in plan.warnings


def test_cpu_only_profile_plans_a_small_model():
    plan = build_plan(PlanInputs.for_profile(NONE, catalog_geometry("tinyllama:1.1b"), num_ctx=2048, num_predict=1024))
    assert plan.placement.offloaded_layers == 0 and plan.errors == ()
    table = format_plan_table(plan)
    assert not any(line.startswith("GPU") for line in table.splitlines())
    assert "offloaded 0/23 layers" in table


def test_table_prints_sizes_like_ollama():
    # The field-notes A10 case (placement test_a10_field_notes_case), rows as Ollama prints them:
    # GPU 19,885,455,360 + 2,013,265,920 + 199,229,440 = 22,097,950,720 (20.58 GiB);
    # CPU 12,592,506,880 + 1,207,959,552 + 88,080,384 = 13,888,546,816 (12.93 GiB).
    table = format_plan_table(recipe_plan())
    assert "offloaded 30/49 layers to GPU: 30 of 48 blocks, output layer on CPU" in table
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines() if line.startswith(("GPU", "CPU", "all"))}
    assert rows["GPU"] == ["18.5", "GiB", "1.9", "GiB", "190.0", "MiB", "20.6", "GiB"]
    assert rows["CPU"] == ["11.7", "GiB", "1.1", "GiB", "84.0", "MiB", "12.9", "GiB"]
    assert rows["all"][-2:] == ["33.5", "GiB"]
    assert "layer space 20.9 GiB = free 22.5 GiB - minimum 457.0 MiB - overhead 1.0 GiB - graph 190.0 MiB" in table
    assert "first prompt up to 12000 tokens" in table


def test_op_offload_switch_changes_only_the_graphs(capsys):
    argv = ["--model", Q8, "--gpu", "a10", "--gpu-overhead", "1GiB", "--json"]
    assert main(argv) == 0
    default = json.loads(capsys.readouterr().out)
    assert main([*argv, "--op-offload", "on"]) == 0
    offloading = json.loads(capsys.readouterr().out)
    assert (default["settings"]["op_offload"], offloading["settings"]["op_offload"]) == (False, True)
    assert default["memory"]["graph"] == {"gpu": 190 * MIB, "cpu": 84 * MIB}
    assert offloading["memory"]["graph"] == {"gpu": 450 * MIB, "cpu": 4 * MIB}
    assert offloading["layers"] == default["layers"]
    for part in ("weights", "kv_cache"):
        assert offloading["memory"][part] == default["memory"][part]


def test_profiles_state_their_assumptions():
    assert set(PROFILES) == {"a10", "v100", "none"}
    assert all(profile.assumptions for profile in PROFILES.values())
    assert A10.gpu.free_vram == round(22.5 * GIB) and V100.gpu.memory_bandwidth == 900e9


def test_inputs_reject_a_gpu_without_bandwidth():
    with pytest.raises(ValueError, match="bandwidth"):
        PlanInputs.for_profile(NONE, catalog_geometry(Q8), num_ctx=4096, num_predict=100, gpu_free_vram=GIB)


def test_cli_flags_override_the_profile(capsys):
    assert main(["--model", Q8, "--gpu", "v100", "--gpu-free-vram", "22.5GiB", "--gpu-overhead", "1GiB", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["layers"]["on_gpu"] == 30
    assert data["settings"]["gpu_free_vram"] == round(22.5 * GIB)


@pytest.mark.parametrize(
    "argv",
    [
        ["--model", "nope"],
        ["--model", Q8, "--gpu-free-vram", "lots"],
        ["--model", Q8, "--kv-cache-type", "q5_1"],
        ["--model", Q8, "--num-ctx", "0"],
        ["--gguf", "/nonexistent/model.gguf"],
        [],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("scripts/plan: ")


def test_scripts_plan_runs_the_documented_example():
    command = [
        str(REPO / "scripts/plan"), "--model", Q8, "--gpu-free-vram", "22.5GiB", "--num-ctx", "32768",
        "--kv-cache-type", "f16", "--flash-attention", "on", "--gpu-overhead", "1GiB", "--num-parallel", "1", "--json",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ}, cwd="/")
    assert json.loads(result.stdout)["layers"]["on_gpu"] == 30
