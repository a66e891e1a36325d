"""The op-offload prefill model: its arithmetic by hand, its lab constants refitted from the committed
lab data, and how plans use it (derived for a profile, replaced by a measured override)."""

from pathlib import Path

import pytest

from ollama_gpu.gpulab.compare import gpu_prefill_profile, lab_geometry
from ollama_gpu.gpulab.models import MODELS
from ollama_gpu.gpulab.results import load
from ollama_gpu.planner.catalog import catalog_geometry
from ollama_gpu.planner.hardware import A10, V100
from ollama_gpu.planner.placement import place
from ollama_gpu.planner.plan import PlanInputs, build_plan
from ollama_gpu.planner.prefill import (
    LAB_GPU_PREFILL, GpuPrefill, derived_prefill_model, host_weight_bytes, prefill_estimate, uniform_expert_share,
)
from ollama_gpu.planner.units import GIB

Q8 = "qwen3:30b-a3b-thinking-2507-q8_0"
Q8_BLOCK = 662_848_512
Q8_EXPERTS = 3 * 213_909_504  # gate, up, down: 2048 x 768 x 128 values in Q8_0 (34 B per 32)
RESULTS = Path(__file__).resolve().parents[2] / "lab" / "results"


def a10_layout(**settings):
    # The field-notes A10 case: 30 of 48 blocks on the GPU at 32K f16 KV.
    return place(catalog_geometry(Q8), gpu_free_vram=round(22.5 * GIB), gpu_overhead=GIB, num_ctx=32768,
                 kv_cache_type="f16", flash_attention=True, num_parallel=1, op_offload=True, **settings)


def test_one_batch_is_the_host_blocks_copy_plus_gpu_time():
    # 18 host blocks x 662,848,512 B (every expert: share 1) + their f16 KV for 512 cells
    # (2 x 128 x 4 x 512 x 2 B = 1 MiB per layer) = 11,931,273,216 + 18,874,368 B; at 7 GB/s 1.7072 s.
    gpu = GpuPrefill(100e-6, 0.0, "test")
    estimate = prefill_estimate(catalog_geometry(Q8), a10_layout(), 512, h2d_bandwidth=7e9, gpu=gpu, expert_share=1.0)
    assert estimate.batches == 1
    assert estimate.transfer_bytes == 18 * Q8_BLOCK + 18 * 1_048_576
    assert estimate.transfer_seconds == pytest.approx(11_950_147_584 / 7e9)
    assert estimate.gpu_seconds == pytest.approx(0.0512)


def test_later_batches_also_copy_the_kv_they_attend_to():
    # Two batches: the first sees 512 cells, the second 1024; weights copied twice.
    gpu = GpuPrefill(0.0, 0.0, "test")
    estimate = prefill_estimate(catalog_geometry(Q8), a10_layout(), 1000, h2d_bandwidth=1.0, gpu=gpu, expert_share=1.0)
    assert estimate.transfer_bytes == 2 * 18 * Q8_BLOCK + 18 * (512 + 1024) * 2048


def test_only_the_routed_share_of_experts_is_copied():
    geometry, layout = catalog_geometry(Q8), a10_layout()
    assert host_weight_bytes(geometry, layout, 1.0) == pytest.approx(18 * Q8_BLOCK)
    assert host_weight_bytes(geometry, layout, 0.0) == pytest.approx(18 * (Q8_BLOCK - Q8_EXPERTS), rel=1e-6)
    # A trained router spreads 512 tokens x 8 picks over practically all 128 experts.
    assert uniform_expert_share(geometry, 512) > 0.999999
    assert uniform_expert_share(catalog_geometry("tinyllama:1.1b"), 512) == 1.0


@pytest.mark.parametrize("key", ["qwen3-30b-a3b-q8_0", "qwen3-30b-a3b-q4_K_M"])
def test_lab_constants_are_the_fit_of_the_committed_runs(key):
    files = [load(path) for path in sorted(RESULTS.glob(f"{key}.*.json"))]
    fitted = gpu_prefill_profile(files, lab_geometry(files[0]))
    constant = LAB_GPU_PREFILL[MODELS[key].name]
    assert constant.seconds_per_token == pytest.approx(fitted.seconds_per_token, rel=0.01)
    assert constant.seconds_per_token_squared == pytest.approx(fitted.seconds_per_token_squared, rel=0.01)


def test_plans_with_op_offload_derive_prefill_for_the_profile():
    plan = build_plan(PlanInputs.for_profile(A10, catalog_geometry(Q8), num_ctx=32768, num_predict=20480,
                                             gpu_overhead=GIB, op_offload=True))
    assert plan.prefill_source.startswith("op-offload prefill model, derived for the NVIDIA A10")
    model = derived_prefill_model(Q8, h2d_bandwidth=7.0e9, slowdown_vs_lab=7.9, card="A10")
    expected = model.estimate(plan.inputs.geometry, plan.placement, 32768).tokens_per_s
    assert plan.prefill_tokens_per_s == pytest.approx(expected)
    # Fast enough that a whole-context prompt answers within 300 s: no num_predict advice.
    assert plan.context.suggested_num_predict is None and plan.context.max_prompt_tokens == 32768 - 20480


def test_a_measured_rate_overrides_the_derived_one():
    plan = build_plan(PlanInputs.for_profile(V100, catalog_geometry(Q8), num_ctx=32768, num_predict=20480,
                                             op_offload=True, prefill_tokens_per_s=55.0))
    assert plan.prefill_tokens_per_s == 55.0 and plan.prefill_source.startswith("stated rate")
    assert plan.context.timely_prompt_tokens == 16500


def test_without_op_offload_the_stated_rate_stays():
    plan = build_plan(PlanInputs.for_profile(A10, catalog_geometry(Q8), num_ctx=32768, num_predict=20480))
    assert plan.prefill_tokens_per_s == 40.0 and plan.context.max_prompt_tokens == 12000


def test_models_without_a_lab_fit_keep_the_stated_rate():
    assert derived_prefill_model("tinyllama:1.1b", h2d_bandwidth=7e9, slowdown_vs_lab=7.9, card="A10") is None
