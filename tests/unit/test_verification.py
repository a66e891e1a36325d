"""Parsing the server's own report and comparing it with a plan.

The log lines are in the exact format Ollama 0.24.0 prints (copied from a real run on this
machine for the CPU case; for the A10 case, the same format carrying field-notes.md's figures).
"""

import json

from ollama_gpu.verification import LOG_MARK, PS_MARK, compare, format_table, parse_report

GIB, MIB = 2**30, 2**20

CPU_LOG = """\
time=2026-11-24T06:32:11.101Z level=INFO source=server.go:792 msg="loading model" "model layers"=5 requested=-1
time=2026-11-24T06:32:11.300Z level=INFO source=ggml.go:502 msg="offloaded 0/5 layers to GPU"
time=2026-11-24T06:32:11.301Z level=INFO source=device.go:245 msg="model weights" device=CPU size="2.7 MiB"
time=2026-11-24T06:32:11.301Z level=INFO source=device.go:256 msg="kv cache" device=CPU size="4.2 MiB"
time=2026-11-24T06:32:11.301Z level=INFO source=device.go:267 msg="compute graph" device=CPU size="6.0 MiB"
time=2026-11-24T06:32:11.301Z level=INFO source=device.go:272 msg="total memory" size="13.0 MiB"
"""
CPU_PS = {"models": [{"name": "tiny:tuned", "size": 13610496, "size_vram": 0, "context_length": 4096}]}


def report(ps: dict, log: str) -> str:
    return f"{PS_MARK}\n{json.dumps(ps)}\n{LOG_MARK}\n{log}"


def plan(weights: tuple, kv: tuple, graph: tuple, total: int, on_gpu: int, output_on_gpu: bool = False) -> dict:
    def split(pair):
        return {"gpu": int(pair[0]), "cpu": int(pair[1])}

    return {
        "layers": {"on_gpu": on_gpu, "total": 48, "output_on_gpu": output_on_gpu},
        "memory": {"weights": split(weights), "kv_cache": split(kv), "graph": split(graph), "total": int(total)},
    }


def test_parses_the_cpu_report_of_a_real_server():
    parsed = parse_report(report(CPU_PS, CPU_LOG), "tiny:tuned")
    assert parsed.memory == {
        "weights": {"cpu": round(2.7 * MIB)},
        "kv_cache": {"cpu": round(4.2 * MIB)},
        "graph": {"cpu": round(6.0 * MIB)},
    }
    assert parsed.total == 13 * MIB
    assert (parsed.layers_offloaded, parsed.layers_total) == (0, 5)
    assert parsed.loaded["context_length"] == 4096
    assert parsed.dropped_settings == []


def test_a_matching_cpu_plan_passes():
    cpu_plan = plan((0, 2.7 * MIB), (0, 4.25 * MIB), (0, 6 * MIB), 13 * MIB, on_gpu=0)
    verification = compare(cpu_plan, parse_report(report(CPU_PS, CPU_LOG), "tiny:tuned"),
                           num_ctx=4096, kv_cache_type="q8_0", tolerance=0.15)
    assert verification.ok, format_table(verification)
    assert {c.figure for c in verification.checks} >= {"context_length", "memory.kv_cache.cpu", "layers.offloaded"}


# field-notes.md: q8_0 KV was requested on the A10, the log showed an f16-sized cache (1.9 + 1.1 GiB).
A10_LOG_F16_KV = """\
time=2025-09-01T10:00:00.000Z level=WARN source=server.go:270 msg="quantized kv cache requested but flash attention disabled" type=q8_0
time=2025-09-01T10:00:05.000Z level=INFO source=ggml.go:502 msg="offloaded 30/49 layers to GPU"
time=2025-09-01T10:00:05.000Z level=INFO source=device.go:240 msg="model weights" device=CUDA0 size="18.5 GiB"
time=2025-09-01T10:00:05.000Z level=INFO source=device.go:245 msg="model weights" device=CPU size="11.7 GiB"
time=2025-09-01T10:00:05.000Z level=INFO source=device.go:251 msg="kv cache" device=CUDA0 size="1.9 GiB"
time=2025-09-01T10:00:05.000Z level=INFO source=device.go:256 msg="kv cache" device=CPU size="1.1 GiB"
time=2025-09-01T10:00:05.000Z level=INFO source=device.go:262 msg="compute graph" device=CUDA0 size="190.5 MiB"
time=2025-09-01T10:00:05.000Z level=INFO source=device.go:267 msg="compute graph" device=CPU size="84.0 MiB"
time=2025-09-01T10:00:05.000Z level=INFO source=device.go:272 msg="total memory" size="33.5 GiB"
"""
A10_PS = {"models": [{"name": "qwen3-30b-a3b-2507-q8:ctx32k", "size": 35970000000, "size_vram": 21500000000,
                      "context_length": 32768}]}


def test_the_field_notes_a10_log_is_flagged_as_kv_type_not_in_effect():
    # What a q8_0 plan expects on the A10: the same weights, half-ish the KV (34/64 of f16).
    q8_plan = plan((18.5 * GIB, 11.7 * GIB), (1.875 * GIB * 34 / 64, 1.125 * GIB * 34 / 64),
                   (190.5 * MIB, 84 * MIB), 32.1 * GIB, on_gpu=30)
    verification = compare(q8_plan, parse_report(report(A10_PS, A10_LOG_F16_KV), "qwen3-30b-a3b-2507-q8:ctx32k"),
                           num_ctx=32768, kv_cache_type="q8_0", tolerance=0.15)
    assert not verification.ok
    text = "\n".join(verification.warnings)
    assert "quantized kv cache requested but flash attention disabled" in text
    assert "memory.kv_cache.gpu" in text and "memory.kv_cache.cpu" in text
    assert "quantized KV cache type is not in effect" in text
    weights = {c.figure: c.ok for c in verification.checks if c.figure.startswith("memory.weights")}
    assert weights == {"memory.weights.gpu": True, "memory.weights.cpu": True}


def test_the_last_summary_wins_when_the_server_relaid_out():
    relaid = A10_LOG_F16_KV + 'level=INFO msg="model weights" device=CUDA0 size="17.9 GiB"\nlevel=INFO msg="offloaded 29/49 layers to GPU"\n'
    parsed = parse_report(report(A10_PS, relaid), "qwen3-30b-a3b-2507-q8:ctx32k")
    assert parsed.memory["weights"]["gpu"] == round(17.9 * GIB)
    assert parsed.layers_offloaded == 29


def test_an_alias_missing_from_api_ps_is_a_warning():
    verification = compare(plan((0, 0), (0, 0), (0, 0), 0, 0), parse_report(report({"models": []}, ""), "x"),
                           num_ctx=4096, kv_cache_type="f16", tolerance=0.15)
    assert any("not loaded" in w for w in verification.warnings)


def test_a_pulled_model_unlike_the_catalog_is_reported():
    from ollama_gpu.config_loader import load_settings
    from ollama_gpu.stack_plan import plan_for
    from ollama_gpu.verification import SHOW_MARK, verify_deployment

    settings = load_settings("v100", {"profile": "v100"})
    model_info = {
        "general.architecture": "qwen3moe", "qwen3moe.block_count": 47, "qwen3moe.embedding_length": 2048,
        "qwen3moe.attention.head_count": 32, "qwen3moe.attention.head_count_kv": 4,
        "qwen3moe.attention.key_length": 128, "qwen3moe.context_length": 262144,
        "qwen3moe.expert_count": 128, "qwen3moe.expert_used_count": 8, "qwen3moe.expert_feed_forward_length": 768,
    }  # fmt: skip
    ps = {"models": [{"name": settings.model.alias, "context_length": 32768}]}
    text = f"{PS_MARK}\n{json.dumps(ps)}\n{SHOW_MARK}\n{json.dumps({'model_info': model_info})}\n{LOG_MARK}\n"
    verification = verify_deployment(settings, plan_for(settings), text)
    assert any("block_count: planned 48, Ollama reports 47" in w for w in verification.warnings)
    assert not any("embedding_length" in w for w in verification.warnings)


def test_the_verification_output_reports_a_mismatch_and_never_fails_the_program():
    """A raise inside the output's apply would come after the alias step is already in state, so
    every later `up` would fail until the config changed: the output only reports and warns, with
    verification.failOnMismatch too (which fails the alias step itself instead)."""
    from components.plan_verification import judge
    from ollama_gpu.config_loader import load_settings
    from ollama_gpu.stack_plan import plan_for

    text = report(A10_PS, A10_LOG_F16_KV)
    for strict in (False, True):
        settings = load_settings("v100", {
            "profile": "v100", "model": {"alias": "qwen3-30b-a3b-2507-q8:ctx32k"},
            "verification": {"failOnMismatch": strict},
        })
        result = judge(settings, plan_for(settings), text)
        assert result["ok"] is False and result["warnings"], strict


def test_two_gpus_are_checked_card_by_card():
    from ollama_gpu.verification import compare, parse_report

    log = "\n".join([
        'level=INFO msg="model weights" device=CUDA0 size="14.8 GiB"',
        'level=INFO msg="model weights" device=CUDA1 size="15.1 GiB"',
        'level=INFO msg="model weights" device=CPU size="315.3 MiB"',
        'level=INFO msg="kv cache" device=CUDA0 size="1.5 GiB"',
        'level=INFO msg="kv cache" device=CUDA1 size="1.5 GiB"',
        'level=INFO msg="compute graph" device=CUDA0 size="190.0 MiB"',
        'level=INFO msg="compute graph" device=CUDA1 size="190.0 MiB"',
    ])
    report = parse_report("### api/ps\n{}\n### placement log\n" + log, "m")
    assert report.memory["weights"]["gpu"] == round(14.8 * 2**30) + round(15.1 * 2**30)
    gib = 2**30
    share = {"weights": round(14.8 * gib), "kv_cache": round(1.5 * gib), "graph": 190 * 2**20}
    plan = {
        "memory": {"weights": {"gpu": round(29.9 * gib), "cpu": round(315.3 * 2**20)},
                   "kv_cache": {"gpu": 3 * gib, "cpu": 0}, "graph": {"gpu": 380 * 2**20, "cpu": 0}, "total": 0},
        "layers": {"on_gpu": 48, "output_on_gpu": True},
        "gpus": [{"index": 0, **share}, {"index": 1, **share, "weights": round(12.0 * gib)}],
    }
    result = compare(plan, report, num_ctx=32768, kv_cache_type="f16", tolerance=0.05)
    failed = [check.figure for check in result.checks if not check.ok]
    assert failed == ["memory.weights.CUDA1"]
