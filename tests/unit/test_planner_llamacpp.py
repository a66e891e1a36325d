"""llama-server's placement (llamacpp_placement.py): buffers, override patterns, --fit, plan output.

The expected bytes are computed by hand from the catalog's Qwen3-30B-A3B q8_0 shapes (ggml's Q8_0
block: 32 values in 34 bytes), independently of the planner's code.
"""

import json

import pytest

from ollama_gpu.planner.catalog import catalog_geometry
from ollama_gpu.planner.cli import main
from ollama_gpu.planner.hardware import A10, V100
from ollama_gpu.planner.llamacpp_log import measured_buffers, settings_from_args
from ollama_gpu.planner.llamacpp_placement import (
    CPU, FFN_EXPS_REGEX, FIT_ALL_EXPERTS_REGEX, GPU, Fraction, ServerSettings, UnpredictableModel, block_ranges,
    fit_overflow_pattern, fit_overrides, FitLayers, fit_prediction, n_cpu_moe_overrides, n_cpu_moe_patterns,
    override_device, place_llama_server, smallest_n_cpu_moe, _false_position_step,
)
from ollama_gpu.planner.llamacpp_speed import host_weights_per_ubatch, llama_decode_bound, llama_prefill_estimate
from ollama_gpu.planner.plan import PlanInputs, build_plan, format_plan_table
from ollama_gpu.planner.prefill import LAB_GPU_PREFILL
from ollama_gpu.planner.units import GIB, MIB

Q8 = "qwen3:30b-a3b-thinking-2507-q8_0"
RECIPE = ServerSettings(ctx_size=32768)  # 32K context, f16 KV, flash attention, one slot, -ub 512

# Hand arithmetic for Qwen3-30B-A3B q8_0 (hidden 2048, 32 x 128 query heads, 4 KV heads, 128
# experts of width 768, vocabulary 151936). A Q8_0 row of 2048 values is 64 blocks = 2176 bytes.
ROW_2048 = 2048 // 32 * 34
EXPERT_UP = 768 * 128 * ROW_2048  # ffn_up_exps / ffn_gate_exps: 213,909,504 bytes
# ffn_down_exps rows are 768 values (816 bytes); CUDA pads one row by 256 values (272 bytes), then
# the tensor is aligned to 128 bytes.
EXPERT_DOWN = 2048 * 128 * (768 // 32 * 34)
EXPERT_DOWN_CUDA = -(-(EXPERT_DOWN + 256 // 32 * 34) // 128) * 128
EXPERTS_CUDA = 2 * EXPERT_UP + EXPERT_DOWN_CUDA
EXPERTS_HOST = 2 * EXPERT_UP + EXPERT_DOWN
# attn_q and attn_output (4096 x 2048 values each), attn_k and attn_v (512 rows), four f32 norms,
# the f32 router (2048 x 128).
DENSE = 2 * 4096 * ROW_2048 + 2 * 512 * ROW_2048 + 2 * 2048 * 4 + 2 * 128 * 4 + 2048 * 128 * 4
OUTPUT = 151936 * ROW_2048 + 2048 * 4
TOKEN_EMBD = 151936 * ROW_2048
KV_LAYER = 2 * 512 * 32768 * 2  # K and V, 512 values per cell, 32768 cells, f16
# Compute buffer: the f16 mask (32768 x 512), the MoE activations (graph.activation_bytes) and one
# more hidden vector, and the staged expert copy (graph.staged_weight_bytes: expert -
# activations / 2 + 64 MiB).
MASK = 2 * 32768 * 512
ACTIVATIONS = 4 * 512 * (2048 * 8 + 3 * 768 * 8 + 3 * 2048)
HIDDEN = 4 * 512 * 2048
STAGING = EXPERT_UP - ACTIVATIONS // 2 + 64 * MIB


def gpu_total(n):
    model = 48 * DENSE + (48 - n) * EXPERTS_CUDA + OUTPUT
    return model + 48 * KV_LAYER + MASK + ACTIVATIONS + HIDDEN + (STAGING if n else 0)


@pytest.fixture(scope="module")
def q8():
    return catalog_geometry(Q8)


def test_every_layer_on_the_gpu_matches_the_hand_count(q8):
    placement = place_llama_server(q8, RECIPE)
    # The same per-layer CUDA bytes Ollama's runner reported in the lab (662848896 and 330620928).
    assert DENSE + EXPERTS_CUDA == 662848896 and OUTPUT == 330620928
    assert placement.model_gpu == 48 * (DENSE + EXPERTS_CUDA) + OUTPUT
    assert placement.model_host == TOKEN_EMBD
    assert (placement.kv_gpu, placement.kv_cpu) == (48 * KV_LAYER, 0)
    assert placement.compute.gpu == MASK + ACTIVATIONS + HIDDEN  # nothing staged
    assert placement.compute.host == MASK + 4 * 512 * 2048  # the mask input and the token embeddings
    assert placement.compute.output == 4 * 151936


@pytest.mark.parametrize(("free", "expected_n"), [(22.5 * GIB, 20), (31.5 * GIB, 5)])
def test_smallest_n_cpu_moe_for_the_target_cards(q8, free, expected_n):
    """A10 (22.5 GiB free) and V100 (31.5 GiB), 1 GiB margin: N is the first count whose GPU total
    fits, by the hand count: N - 1 would not."""
    budget = round(free) - GIB
    assert gpu_total(expected_n) <= budget < gpu_total(expected_n - 1)
    result = smallest_n_cpu_moe(q8, RECIPE, free_vram=round(free), margin=GIB)
    assert result.n_cpu_moe == expected_n
    placement = result.placement
    assert placement.gpu_total == gpu_total(expected_n)
    assert placement.model_host == TOKEN_EMBD + expected_n * EXPERTS_HOST
    assert placement.cpu_expert_blocks == tuple(range(expected_n))


def test_n_cpu_moe_moves_only_the_routed_experts_of_the_first_blocks(q8):
    placement = place_llama_server(q8, RECIPE, overrides=n_cpu_moe_overrides(3))
    for tensor in placement.tensors:
        if tensor.name == "token_embd.weight":
            assert tensor.device == CPU and not tensor.overridden  # the input layer stays on the CPU anyway
        elif tensor.name.endswith("_exps.weight") and tensor.layer < 3:
            assert tensor.device == CPU and tensor.overridden
        else:
            assert tensor.device == GPU, tensor.name  # attention, norms, routers, later experts, output


def test_a_tied_output_is_loaded_again_on_the_gpu(q8):
    tied = q8.__class__(**{**{f: getattr(q8, f) for f in q8.__dataclass_fields__},
                           "tensors": tuple(t for t in q8.tensors if t.name != "output.weight")})
    placement = place_llama_server(tied, RECIPE)
    copies = [t for t in placement.tensors if t.name == "token_embd.weight"]
    assert [(t.device, t.layer) for t in copies] == [(CPU, -1), (GPU, 48)]


def test_kv_cells_follow_llama_context_padding():
    assert ServerSettings(ctx_size=32768).kv_cells == 32768
    assert ServerSettings(ctx_size=1000).kv_cells == 1024
    four = ServerSettings(ctx_size=4 * 8192, parallel=4)
    assert (four.slot_cells, four.kv_cells) == (8192, 32768)
    odd = ServerSettings(ctx_size=30000, parallel=4)  # PAD(30000, 256) = 30208; / 4 = 7552 -> 7680 per slot
    assert (odd.slot_cells, odd.kv_cells) == (7680, 30720)
    unified = ServerSettings(ctx_size=30000, parallel=4, kv_unified=True)
    assert (unified.slot_cells, unified.kv_cells) == (30208, 30208)
    assert ServerSettings(ctx_size=256, ubatch=512).reserve_tokens == 256


def test_a_quantized_v_cache_needs_flash_attention():
    with pytest.raises(ValueError, match="flash attention"):
        ServerSettings(ctx_size=4096, cache_type="q8_0", flash_attention=False)


# The truth table of std::regex_search for these patterns and names, as a C++ program built with
# g++ 12 (libstdc++) printed it; Python's re.search gives the same for the patterns llama.cpp uses.
NAMES = (
    "blk.3.ffn_up_exps.weight", "blk.3.ffn_gate_exps.weight", "blk.3.ffn_down_exps.weight",
    "blk.3.ffn_gate_up_exps.weight", "blk.3.ffn_up_chexps.weight", "blk.3.ffn_down_exps.bias",
    "blk.3.ffn_up_shexp.weight", "blk.3.ffn_gate_inp.weight", "blk.3.ffn_norm.weight", "blk.3.attn_q.weight",
    "blk.13.ffn_up_exps.weight", "blk.30.ffn_up_exps.weight", "blk.0.ffn_up_exps.weight",
    "blk.10.ffn_down_exps.weight", "token_embd.weight", "output.weight", "blk.3.ffn_up.weight",
    "blk.3.ffn_down.weight", "blk.3.ffn_gate_inp_shexp.weight",
)
BLOCK_3_EXPERTS = {
    "blk.3.ffn_up_exps.weight", "blk.3.ffn_gate_exps.weight", "blk.3.ffn_down_exps.weight",
    "blk.3.ffn_gate_up_exps.weight", "blk.3.ffn_up_chexps.weight", "blk.3.ffn_down_exps.bias",
}
REGEX_TRUTH = {
    n_cpu_moe_patterns(4)[3]: BLOCK_3_EXPERTS,
    n_cpu_moe_patterns(1)[0]: {"blk.0.ffn_up_exps.weight"},
    FIT_ALL_EXPERTS_REGEX: BLOCK_3_EXPERTS | {"blk.13.ffn_up_exps.weight", "blk.30.ffn_up_exps.weight",
                                              "blk.0.ffn_up_exps.weight", "blk.10.ffn_down_exps.weight"},
    fit_overflow_pattern(3, Fraction.ATTN): BLOCK_3_EXPERTS | {
        "blk.3.ffn_up_shexp.weight", "blk.3.ffn_gate_inp.weight", "blk.3.ffn_up.weight", "blk.3.ffn_down.weight",
        "blk.3.ffn_gate_inp_shexp.weight"},
    fit_overflow_pattern(3, Fraction.UP): {
        "blk.3.ffn_gate_exps.weight", "blk.3.ffn_down_exps.weight", "blk.3.ffn_gate_up_exps.weight",
        "blk.3.ffn_down_exps.bias", "blk.3.ffn_gate_inp.weight", "blk.3.ffn_down.weight",
        "blk.3.ffn_gate_inp_shexp.weight"},
    fit_overflow_pattern(3, Fraction.GATE): {
        "blk.3.ffn_down_exps.weight", "blk.3.ffn_down_exps.bias", "blk.3.ffn_down.weight"},
}


@pytest.mark.parametrize("pattern", list(REGEX_TRUTH))
def test_override_patterns_match_what_std_regex_search_matches(pattern):
    assert {name for name in NAMES if override_device(name, [(pattern, CPU)])} == REGEX_TRUTH[pattern]


def test_the_n_cpu_moe_patterns_are_llama_cpps():
    assert FFN_EXPS_REGEX == r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"
    assert n_cpu_moe_patterns(2) == (r"blk\.0\.ffn_(up|down|gate|gate_up)_(ch|)exps",
                                     r"blk\.1\.ffn_(up|down|gate|gate_up)_(ch|)exps")
    assert n_cpu_moe_patterns(0) == ()
    with pytest.raises(ValueError):
        n_cpu_moe_patterns(-1)


def test_the_first_matching_override_wins():
    assert override_device("blk.3.ffn_up_exps.weight", [(r"ffn_up", GPU), (r"exps", CPU)]) == GPU
    assert override_device("blk.3.attn_q.weight", [(r"exps", CPU)]) is None


def test_fit_overrides_put_the_partial_layers_last_with_the_output_slot_among_them():
    ngl, overrides = fit_overrides(FitLayers(49, 21, Fraction.ATTN), 48)
    assert ngl == 49
    assert [pattern for pattern, _ in overrides] == (
        [fit_overflow_pattern(28, Fraction.ATTN)] + [fit_overflow_pattern(il, Fraction.MOE) for il in range(29, 49)])
    assert {device for _, device in overrides} == {CPU}


@pytest.mark.parametrize(("delta", "to_target", "to_high", "step"), [
    (48, 10, 20, 24), (48, 1, 1000, 1), (48, 999, 1000, 47), (48, -5, 100, 47), (2, 5, 10, 1), (48, 7, 3, 47),
])
def test_false_position_step_follows_cpp_integer_arithmetic(delta, to_target, to_high, step):
    assert _false_position_step(delta, to_target, to_high) == step


@pytest.mark.parametrize(("free", "n", "fraction"), [(22.5 * GIB, 20, Fraction.ATTN), (31.5 * GIB, 5, Fraction.UP)])
def test_fit_keeps_the_experts_of_the_last_blocks(q8, free, n, fraction):
    """--fit reaches the same count as the smallest --n-cpu-moe (every block weighs the same) but
    at the end of the model, then squeezes the first partial block."""
    fit = fit_prediction(q8, RECIPE, free_vram=round(free), margin=GIB)
    assert fit.changed
    assert fit.layers == FitLayers(49, n + 1, fraction)
    assert fit.cpu_expert_blocks == tuple(range(48 - n, 48))
    assert fit.placement.gpu_total <= round(free) - GIB


def test_fit_changes_nothing_when_everything_fits(q8):
    fit = fit_prediction(q8, RECIPE, free_vram=40 * GIB)
    assert not fit.changed and fit.cpu_expert_blocks == ()


def test_sliding_window_models_are_refused_for_llama_server():
    from ollama_gpu.gpulab.models import MODELS

    gemma = MODELS["gemma3-27b-q4_K_M"].geometry()
    with pytest.raises(UnpredictableModel, match="sliding-window"):
        place_llama_server(gemma, RECIPE)


def test_decode_reads_the_host_experts_at_host_bandwidth(q8):
    placement = smallest_n_cpu_moe(q8, RECIPE, free_vram=round(22.5 * GIB), margin=GIB).placement
    bound = llama_decode_bound(placement, gpu_bandwidth=600e9, host_bandwidth=100e9, context_fill=4096)
    host = round(20 * EXPERTS_HOST * 8 / 128)
    assert abs(bound.cpu_bytes_per_token - host) <= 60  # per-tensor rounding of the 8/128 share
    kv = 48 * KV_LAYER * 4096 // 32768
    gpu = 48 * DENSE + 28 * round(EXPERTS_HOST * 8 / 128) + OUTPUT + kv
    assert abs(bound.gpu_bytes_per_token - gpu) <= 100
    assert bound.tokens_per_s == pytest.approx(1 / (bound.gpu_bytes_per_token / 600e9 + bound.cpu_bytes_per_token / 100e9))


def test_prefill_copies_the_used_share_of_the_host_experts_per_ubatch(q8):
    placement = smallest_n_cpu_moe(q8, RECIPE, free_vram=round(22.5 * GIB), margin=GIB).placement
    assert host_weights_per_ubatch(q8, placement, 1.0) == 20 * EXPERTS_HOST
    gpu = LAB_GPU_PREFILL[Q8]
    estimate = llama_prefill_estimate(q8, placement, 2048, h2d_bandwidth=10e9, gpu=gpu, expert_share=0.5)
    assert estimate.batches == 4
    assert estimate.transfer_bytes == pytest.approx(4 * 0.5 * 20 * EXPERTS_HOST)  # the KV cache is on the GPU
    assert estimate.seconds == pytest.approx(estimate.transfer_bytes / 10e9 + gpu.seconds(2048))


LOG = """\
load_tensors: offloaded 49/49 layers to GPU
load_tensors:        CUDA0 model buffer size = 18418.11 MiB
load_tensors:   CPU_Mapped model buffer size = 12866.54 MiB
llama_context:  CUDA_Host  output buffer size =     0.58 MiB
llama_kv_cache:      CUDA0 KV buffer size =  3072.00 MiB
llama_context:      CUDA0 compute buffer size =   340.00 MiB
llama_context:  CUDA_Host compute buffer size =    36.01 MiB
"""


def test_buffer_lines_are_read_per_device():
    buffers = measured_buffers(LOG.splitlines())
    assert buffers.gpu("model") == round(18418.11 * MIB)
    assert buffers.host("model") == round(12866.54 * MIB)
    assert (buffers.gpu("KV"), buffers.host("KV")) == (3072 * MIB, 0)
    assert buffers.gpu("compute") == 340 * MIB and buffers.host("compute") == round(36.01 * MIB)
    assert buffers.host("output") == round(0.58 * MIB)
    assert measured_buffers(["nothing here"]) is None


def test_the_last_load_wins():
    buffers = measured_buffers(["load_tensors:        CUDA0 model buffer size =     0.00 MiB",
                                "load_tensors:        CUDA0 model buffer size =   100.00 MiB"])
    assert buffers.gpu("model") == 100 * MIB


def test_command_lines_become_settings():
    args = settings_from_args(["-m", "/models/q8.gguf", "-c", "65536", "-np", "2", "-ub", "1024", "-ctk", "q8_0",
                               "-ctv", "q8_0", "-fa", "on", "-ngl", "999", "--n-cpu-moe", "20", "--load-mode", "none"])
    assert args.settings == ServerSettings(ctx_size=65536, parallel=2, ubatch=1024, cache_type="q8_0", mmap=False)
    assert (args.n_gpu_layers, args.n_cpu_moe) == (999, 20)
    fit = settings_from_args(["-c", "32768", "--fit", "on", "--fit-target", "2048"])
    assert fit.fit and fit.fit_target == 2048 * MIB and fit.n_gpu_layers is None
    assert fit.settings.parallel == 4 and fit.settings.kv_unified  # llama-server's -np auto
    with pytest.raises(ValueError, match="-c"):
        settings_from_args(["-ngl", "999"])


def test_block_ranges_are_compact():
    assert block_ranges((0, 1, 2, 5, 7, 8)) == "0-2, 5, 7-8"
    assert block_ranges(()) == "none"


def llama_plan(profile=A10, **settings):
    defaults = {"num_ctx": 32768, "num_predict": 20480, "engine": "llama-server"}
    return build_plan(PlanInputs.for_profile(profile, catalog_geometry(Q8), **{**defaults, **settings}))


def test_the_plan_chooses_n_and_says_what_fit_would_do():
    plan = llama_plan(gpu_free_vram=round(22.5 * GIB))
    data = plan.to_dict()
    assert data["engine"] == "llama-server"
    assert data["llama_server"]["n_cpu_moe"] == 20 and data["llama_server"]["n_cpu_moe_chosen_by_planner"]
    assert data["llama_server"]["flags"][-6:] == ["--fit", "off", "-ngl", "999", "--n-cpu-moe", "20"]
    assert data["llama_server"]["fit"]["flags"] == ["--fit", "on", "--fit-target", "1024"]
    assert data["llama_server"]["fit"]["cpu_expert_blocks"] == list(range(28, 48))
    assert data["memory"]["weights"]["gpu"] == 48 * DENSE + 28 * EXPERTS_CUDA + OUTPUT
    assert data["memory"]["kv_cache"] == {"gpu": 48 * KV_LAYER, "cpu": 0}
    assert plan.errors == ()
    table = format_plan_table(plan)
    assert "--n-cpu-moe 20" in table and "routed experts of blocks 0-19 in host RAM" in table
    assert "--fit:" in table and "blocks 28-47" in table
    json.dumps(data)


def test_an_explicit_n_that_does_not_fit_is_an_error():
    plan = llama_plan(gpu_free_vram=round(22.5 * GIB), n_cpu_moe=10)
    assert plan.errors and "--n-cpu-moe 10 needs" in plan.errors[0]


def test_pinned_host_memory_speeds_the_expert_copies():
    mapped = llama_plan(profile=V100, gpu_free_vram=round(31.5 * GIB))
    pinned = llama_plan(profile=V100, gpu_free_vram=round(31.5 * GIB), llama_mmap=False)
    assert pinned.llama_server.n_cpu_moe == mapped.llama_server.n_cpu_moe == 5
    assert pinned.prefill_tokens_per_s > mapped.prefill_tokens_per_s
    assert "--load-mode" in pinned.llama_server.flags()


def test_the_ollama_engine_output_has_no_llama_server_part():
    plan = build_plan(PlanInputs.for_profile(A10, catalog_geometry(Q8), num_ctx=32768, num_predict=20480))
    assert plan.llama_server is None and "llama_server" not in plan.to_dict()


def test_cli_engine_flag(capsys):
    assert main(["--model", Q8, "--engine", "llama-server", "--gpu-free-vram", "22.5GiB", "--registry",
                 "http://127.0.0.1:9", "--insecure"]) == 0
    out = capsys.readouterr().out
    assert "on llama-server" in out and "--n-cpu-moe 20" in out
    assert main(["--model", Q8, "--engine", "vllm"]) == 2


def test_a_quantized_cache_adds_cudas_f16_copies_to_the_attention_phase(q8):
    """Every layer on the GPU, q8_0 KV: the attention phase (query, output, two hidden vectors and
    the f16 K and V copies flash attention allocates with its output) outgrows the FFN phase."""
    placement = place_llama_server(q8, ServerSettings(ctx_size=32768, cache_type="q8_0"))
    attention = 4 * 512 * (2 * 32 * 128 + 2 * 2048) + 2 * 2 * 512 * 32768
    assert attention > ACTIVATIONS + HIDDEN
    assert placement.compute.gpu == MASK + attention
    assert placement.kv_gpu == 48 * 2 * 512 * 32768 * 34 // 32


# Buffer lines the pinned build (b11312, CPU backend, built by the llama-server build helper,
# scripts/dev/build-llama-server.sh)
# logged for a 4-block, 16-expert cut of the catalog's Qwen3-30B-A3B q8_0 (gpulab scaled_down,
# full vocabulary), one run per command line (`llama-server -m FILE ARGS -lv 4`).
CPU_RUNS = [
    ("-c 32768 -np 1 -ub 512 -fa on", 256.00, 120.01, 0.58),
    ("-c 8192 -np 2 -fa on", 64.00, 92.01, 1.16),
    ("-c 32768 -np 1 -ub 128 -fa on", 256.00, 30.00, 0.58),
    ("-c 32768 -np 1 -ctk q8_0 -ctv q8_0 -fa on", 136.00, 120.09, 0.58),
    ("-c 32768 -np 1 -fa off", 256.00, 2142.01, 0.58),
    ("-c 30000 -np 4 -fa on", 240.00, 95.51, 2.32),
    ("-c 16384 -fa on", 128.00, 104.01, 2.32),  # -np auto: 4 slots, unified cache
]
CPU_MODEL_BUFFER = 1013.67  # CPU_Mapped, the same in every run


@pytest.mark.parametrize(("args", "kv", "compute", "output"), CPU_RUNS, ids=[run[0] for run in CPU_RUNS])
def test_cpu_build_buffers_match_the_plan(args, kv, compute, output):
    from ollama_gpu.gpulab.models import MODELS, scaled_down

    geometry = scaled_down(MODELS["qwen3-30b-a3b-q8_0"], 4, 151936, expert_count=16).geometry()
    settings = settings_from_args(args.split()).settings
    lines = [f"load_tensors:   CPU_Mapped model buffer size = {CPU_MODEL_BUFFER:8.2f} MiB",
             f"llama_kv_cache:        CPU KV buffer size = {kv:8.2f} MiB",
             f"sched_reserve:        CPU compute buffer size = {compute:8.2f} MiB",
             f"llama_context:        CPU  output buffer size = {output:8.2f} MiB"]
    measured = measured_buffers(lines)
    planned = place_llama_server(geometry, settings, n_gpu_layers=0)
    assert abs(planned.model_host - measured.host("model")) <= 0.01 * MIB
    assert abs(planned.kv_cpu - measured.host("KV")) <= 0.01 * MIB
    assert abs(planned.compute.host - measured.host("compute")) <= 0.001 * measured.host("compute") + 0.1 * MIB
    assert abs(planned.compute.output - measured.host("output")) <= 0.01 * MIB


def test_a_cpu_only_host_runs_everything_from_host_ram():
    from ollama_gpu.planner.hardware import NONE

    plan = build_plan(PlanInputs.for_profile(NONE, catalog_geometry("tinyllama:1.1b"), num_ctx=2048, num_predict=512,
                                             engine="llama-server"))
    llama = plan.llama_server
    assert llama.flags()[-2:] == ["-ngl", "0"] and llama.fit is None
    assert llama.placement.model_gpu == 0 and llama.placement.kv_cpu > 0
    assert plan.errors == () and plan.decode.gpu_bytes_per_token == 0
    assert "host (CPU_Mapped)" in format_plan_table(plan)


def test_mapped_host_experts_are_pointed_out():
    assert any("--load-mode none" in w for w in llama_plan(gpu_free_vram=round(22.5 * GIB)).warnings)
    assert not any("--load-mode none" in w for w in llama_plan(gpu_free_vram=round(22.5 * GIB), llama_mmap=False).warnings)
