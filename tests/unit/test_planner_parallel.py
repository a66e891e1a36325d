"""The numParallel table: what more slots push to the CPU and the decode bounds per stream and in
aggregate, checked by hand for the recipe's model on the A10, and by properties elsewhere."""

import json

import pytest

from ollama_gpu.planner.catalog import CATALOG, catalog_geometry
from ollama_gpu.planner.cli import main
from ollama_gpu.planner.hardware import A10, NONE, V100
from ollama_gpu.planner.parallel import format_parallel_table, parallel_table
from ollama_gpu.planner.placement import CUDA_MINIMUM_MEMORY
from ollama_gpu.planner.plan import PlanInputs, build_plan
from ollama_gpu.planner.speed import block_bytes_per_step, decode_bound
from ollama_gpu.planner.units import GIB, MIB

Q8 = "qwen3:30b-a3b-thinking-2507-q8_0"

# qwen3moe 30B-A3B at q8_0 (ollama-facts.md): a block is 662,848,512 bytes, of which the 128
# routed experts are 641,728,512 (3 x 768 x 2048 values x 34/32 bytes each) and the rest
# 21,120,000; one token reads 8 experts: 21,120,000 + 641,728,512 / 16 = 61,228,032.
BLOCK, ACTIVE, OUTPUT = 662_848_512, 61_228_032, 330_620_928
# q8_0 KV per layer and cell: K and V, 128 dims x 4 heads, 34 bytes per 32 values.
KV_PER_CELL = 2 * 128 * 4 * 34 // 32  # 1,088


def recipe_inputs(profile=A10, model=Q8, **settings):
    """The a10 stack's recipe: 32K context, q8_0 KV, flash attention, 1 GiB reserve, op offload."""
    defaults = {"num_ctx": 32768, "num_predict": 20480, "kv_cache_type": "q8_0", "gpu_overhead": GIB, "op_offload": True}
    return PlanInputs.for_profile(profile, catalog_geometry(model), **{**defaults, **settings})


def step_seconds(gpu_blocks, block_read, kv_cells_read):
    """One decode step: GPU blocks at 600 GB/s, the other blocks and the output layer at 100 GB/s."""
    per_block = block_read + kv_cells_read * KV_PER_CELL
    return gpu_blocks * per_block / 600e9 + ((48 - gpu_blocks) * per_block + OUTPUT) / 100e9


def test_the_geometry_splits_as_the_hand_figures_say():
    geometry = catalog_geometry(Q8)
    assert set(geometry.block_weight_bytes) == {BLOCK} and set(geometry.block_active_bytes) == {ACTIVE}
    assert geometry.output_bytes == OUTPUT


def test_a10_table_by_hand():
    table = parallel_table(recipe_inputs(), (1, 2, 4))
    one, two, four = table.options
    # KV = num_ctx x slots cells; each slot count's layer space (22.5 GiB - 457 MiB - 1 GiB - its
    # GPU graph) holds floor(space / (block + KV of the block)) blocks, the output layer on the CPU.
    for option, slots, blocks in ((one, 1, 31), (two, 2, 29), (four, 4, 26)):
        p = option.plan.placement
        assert p.kv_cells == 32768 * slots
        space = round(22.5 * GIB) - CUDA_MINIMUM_MEMORY - GIB - p.graph_gpu
        assert space // (BLOCK + 32768 * slots * KV_PER_CELL) == blocks == p.gpu_blocks
        assert not p.output_on_gpu and option.plan.errors == ()
    assert [table.blocks_moved_to_cpu(option) for option in table.options] == [0, 2, 5]
    assert one.plan.placement.graph_gpu == 514 * MIB  # the figure the layer space above used

    # Each stream has 4096 tokens in context. One stream: its active experts and 4096 cells per block.
    assert one.alone.tokens_per_s == pytest.approx(1 / step_seconds(31, ACTIVE, 4096))  # 55.97
    assert one.alone.tokens_per_s == pytest.approx(55.97, abs=0.01)
    assert two.alone.tokens_per_s == pytest.approx(52.74, abs=0.01)  # 2 blocks fewer on the GPU
    assert four.alone.tokens_per_s == pytest.approx(48.54, abs=0.01)
    # Two busy streams: expected union of experts 1 - (120/128)^2 of 128, so a block reads
    # 662,848,512 - 601,620,480 x 120/128 = 98,829,312 bytes, and 8192 cells of KV.
    assert two.all_busy.tokens_per_s == pytest.approx(1 / step_seconds(29, 98_829_312, 8192))
    assert (round(two.all_busy.tokens_per_s, 1), round(two.all_busy.aggregate_tokens_per_s, 1)) == (34.5, 69.0)
    # Four: 601,620,480 x (120/128)^3 = 495,720,000 left unread, 167,128,512 read; 16384 cells.
    assert four.all_busy.tokens_per_s == pytest.approx(1 / step_seconds(26, 167_128_512, 16384))
    assert (round(four.all_busy.tokens_per_s, 1), round(four.all_busy.aggregate_tokens_per_s, 1)) == (19.2, 76.9)


def test_one_stream_reproduces_the_plans_own_decode_bound():
    for profile in (A10, V100):
        plan = build_plan(recipe_inputs(profile))
        assert parallel_table(recipe_inputs(profile), (1,)).options[0].all_busy == plan.decode


@pytest.mark.parametrize("profile", [A10, V100, NONE], ids=lambda profile: profile.name)
@pytest.mark.parametrize("model", sorted(CATALOG))
def test_more_slots_never_help_a_lone_stream_and_each_busy_stream_gets_less(profile, model):
    settings = {"num_ctx": 8192} if model.startswith("tinyllama") else {}
    options = parallel_table(recipe_inputs(profile, model, **settings), (1, 2, 3, 4, 6, 8)).options
    for fewer, more in zip(options, options[1:]):
        p, q = fewer.plan.placement, more.plan.placement
        assert q.kv_cells > p.kv_cells and q.kv_gpu + q.kv_cpu > p.kv_gpu + p.kv_cpu
        assert q.gpu_blocks <= p.gpu_blocks and q.weights_cpu >= p.weights_cpu and q.cpu_total >= p.cpu_total
        assert more.alone.tokens_per_s <= fewer.alone.tokens_per_s
        assert more.all_busy.tokens_per_s < fewer.all_busy.tokens_per_s
    for option in options:
        assert option.all_busy.tokens_per_s <= option.alone.tokens_per_s
        assert option.all_busy.aggregate_tokens_per_s >= option.alone.tokens_per_s


def test_the_union_of_experts_grows_from_the_active_share_to_the_whole_block():
    reads = [block_bytes_per_step(BLOCK, ACTIVE, 8 / 128, streams) for streams in range(1, 200)]
    assert reads[0] == ACTIVE
    assert all(a < b for a, b in zip(reads, reads[1:]))
    assert reads[-1] == pytest.approx(BLOCK, rel=1e-4)
    # A dense block is read whole however many streams share the step.
    assert block_bytes_per_step(1000, 1000, 1.0, 4) == 1000


def test_streams_cannot_exceed_the_slots():
    inputs = recipe_inputs()
    plan = build_plan(inputs)
    with pytest.raises(ValueError, match="num_parallel"):
        decode_bound(inputs.geometry, plan.placement, gpu_bandwidth=600e9, host_bandwidth=100e9, context_fill=4096, streams=2)


def test_the_text_section_names_the_moves_and_the_bounds():
    text = format_parallel_table(parallel_table(recipe_inputs(), (1, 2, 4)))
    lines = text.splitlines()
    assert lines[0].startswith("parallel slots (OLLAMA_NUM_PARALLEL)")
    assert lines[1].split()[:3] == ["parallel", "KV", "cells"]
    assert lines[3].split()[:5] == ["2", "65536", "29/48", "+2", "blocks"]
    assert lines[4].split()[-3:] == ["48.5", "19.2", "76.9"]


def test_scripts_plan_adds_the_section_in_text_and_json(capsys, monkeypatch):
    monkeypatch.setenv("OLLAMA_GPU_NO_REGISTRY", "1")
    flags = ["--model", Q8, "--gpu", "a10", "--kv-cache-type", "q8_0", "--gpu-overhead", "1GiB", "--op-offload", "on"]
    monkeypatch.setattr("ollama_gpu.planner.cli.read_remote_model", _unreachable)
    assert main([*flags, "--parallel", "1,2,4"]) == 0
    assert "parallel slots (OLLAMA_NUM_PARALLEL)" in capsys.readouterr().out
    assert main([*flags, "--parallel", "4,1,2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["parallel"]
    assert [row["num_parallel"] for row in rows] == [1, 2, 4]
    assert rows[2]["blocks_moved_to_cpu"] == 5 and rows[2]["decode_tokens_per_s_bound"]["aggregate_all_busy"] == 76.9
    assert main([*flags]) == 0 and "parallel slots" not in capsys.readouterr().out
    assert main([*flags, "--parallel", "0,2"]) == 2
    assert "slot counts must be positive" in capsys.readouterr().err


def _unreachable(*args, **kwargs):
    from ollama_gpu.planner.registry import RegistryUnreachable

    raise RegistryUnreachable("registry unreachable (test)")
