"""llama-server's own report, parsed and compared with what the stack asked for. The log lines are
written with the printf formats of the pinned build (src/llama-model.cpp, llama-kv-cache.cpp,
llama-context.cpp, tools/server/server-context.cpp); the e2e test reads a real server's."""

import json

from ollama_gpu.llama_verification import LOG_MARK, PROPS_MARK, compare, device_side, parse_report

MIB = 2**20
PROPS = {"default_generation_settings": {"n_ctx": 32768}, "total_slots": 1, "model_alias": "qwen3:ctx32k"}
START = [
    "load_tensors: offloaded 49/49 layers to GPU",
    "load_tensors:        CUDA0 model buffer size = 15234.56 MiB",
    "load_tensors:   CPU_Mapped model buffer size = 16000.00 MiB",
    "llama_kv_cache:      CUDA0 KV buffer size =  1632.00 MiB",
    "llama_kv_cache: size = 1632.00 MiB ( 32768 cells,  48 layers,  1/1 seqs), K (q8_0):  816.00 MiB, V (q8_0):  816.00 MiB",
    "sched_reserve:      CUDA0 compute buffer size =   300.75 MiB",
    "sched_reserve:  CUDA_Host compute buffer size =    72.01 MiB",
    "srv          init: initializing, n_slots = 1, n_ctx_slot = 32768, kv_unified = 'false'",
]


def _report(log: list[str], props: dict = PROPS) -> str:
    return "\n".join(["noise before", PROPS_MARK, json.dumps(props), LOG_MARK, *log])


def test_buffers_are_summed_per_side_of_the_pcie_bus():
    report = parse_report(_report(START))
    assert report.memory == {
        "weights": {"gpu": round(15234.56 * MIB), "cpu": round(16000.00 * MIB)},
        "kv_cache": {"gpu": 1632 * MIB},
        "graph": {"gpu": round(300.75 * MIB), "cpu": round(72.01 * MIB)},
    }
    assert report.kv_types == ("q8_0", "q8_0") and report.slot_context == 32768


def test_pinned_host_memory_and_repacked_weights_are_host_ram():
    assert [device_side(name) for name in ("CUDA0", "CUDA1", "CUDA_Host", "CPU", "CPU_Mapped", "CPU_REPACK")] == [
        "gpu", "gpu", "cpu", "cpu", "cpu", "cpu",
    ]


def test_after_a_restart_the_last_start_counts():
    later = [line.replace("15234.56", "14000.00") for line in START]
    report = parse_report(_report(START + later))
    assert report.memory["weights"]["gpu"] == 14000 * MIB


def test_the_stacks_context_and_kv_type_are_checked():
    verification = compare(parse_report(_report(START)), num_ctx=32768, kv_cache_type="q8_0", planned_memory=None, tolerance=0.15)
    assert verification.ok
    assert {check.figure: check.actual for check in verification.checks}["kv_cache_type"] == "q8_0/q8_0"
    wrong = compare(parse_report(_report(START)), num_ctx=16384, kv_cache_type="f16", planned_memory=None, tolerance=0.15)
    assert not wrong.ok
    assert any("context_per_slot" in warning for warning in wrong.warnings)
    assert any("kv_cache_type" in warning for warning in wrong.warnings)


def test_a_missing_line_is_not_compared_rather_than_zero():
    verification = compare(parse_report(_report(START[:3])), num_ctx=32768, kv_cache_type="q8_0", planned_memory=None,
                           tolerance=0.15)
    assert "the server logged no kv cache buffer sizes: not compared" in verification.warnings
    assert "the server logged no KV cache types: not compared" in verification.warnings


def test_slot_context_falls_back_to_props():
    log = [line for line in START if "n_ctx_slot" not in line]
    verification = compare(parse_report(_report(log)), num_ctx=32768, kv_cache_type="q8_0", planned_memory=None, tolerance=0.15)
    assert verification.ok


def test_a_planned_split_is_compared_within_the_tolerance():
    planned = {
        "weights": {"gpu": 15000 * MIB, "cpu": 16000 * MIB},
        "kv_cache": {"gpu": 3264 * MIB, "cpu": 0},
        "graph": {"gpu": 100 * MIB, "cpu": 0},
    }
    verification = compare(parse_report(_report(START)), num_ctx=32768, kv_cache_type="q8_0", planned_memory=planned,
                           tolerance=0.15)
    failed = sorted(check.figure for check in verification.checks if not check.ok)
    # The KV cache is half the plan; compute buffers are shown, never judged.
    assert failed == ["memory.kv_cache.gpu"]


def test_only_a_placement_the_program_fixed_is_judged_against_the_plan():
    from components.plan_verification import judged_llama_memory
    from ollama_gpu.config_loader import load_settings
    from tests.unit.conftest import AGENT_SOCKET, local_config, remote_config

    plan = {"memory": {"weights": {"gpu": 1, "cpu": 2}}}
    fit = load_settings("a10", remote_config("a10", {"server": {"engine": "llama-server"}}), agent_socket=AGENT_SOCKET)
    explicit = load_settings("a10", remote_config("a10", {"server": {"engine": "llama-server"},
                                                          "llamaServer": {"placement": "nCpuMoe", "nCpuMoe": 18}}),
                             agent_socket=AGENT_SOCKET)
    cpu = load_settings("local", local_config({"server": {"engine": "llama-server"}}))
    # Under --fit llama.cpp decides at start: the plan's choice is shown, not judged.
    assert judged_llama_memory(fit, plan) is None
    assert judged_llama_memory(explicit, plan) == plan["memory"] == judged_llama_memory(cpu, plan)
