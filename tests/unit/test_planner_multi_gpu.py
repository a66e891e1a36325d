"""Several GPUs, derived from llm/server.go (buildLayout, assignLayers, findBestFit, greedyFit) and
server/sched.go: the fewest cards that hold everything, a split balanced by free memory, the output
layer and the last blocks on the last card of the chosen set, a graph on every card that holds
layers, num_gpu forcing a count and num_gpu 0 meaning no GPU.

Figures as in test_planner_placement.py: Qwen3-30B-A3B Q8_0 block + f16 KV at 32K = 729,957,376 B,
output layer 330,620,928 B, 1 GiB overhead, 457 MiB minimum, GPU graph 190 MiB per card.
"""

from ollama_gpu.planner.catalog import catalog_geometry
from ollama_gpu.planner.layout import F32, Gpu, greedy_fit
from ollama_gpu.planner.placement import place
from ollama_gpu.planner.units import GIB, MIB

Q8 = catalog_geometry("qwen3:30b-a3b-thinking-2507-q8_0")
Q4 = catalog_geometry("qwen3:30b-a3b-thinking-2507-q4_K_M")
A10 = round(22.5 * GIB)


def plan(geometry=Q8, frees=(A10, A10), **settings):
    options = {"gpu_free_vram": None, "gpu_overhead": GIB, "num_ctx": 32768, "kv_cache_type": "f16",
               "flash_attention": True, "num_parallel": 1, "gpu_free_vrams": frees, **settings}
    return place(geometry, **options)


def held(placement):
    return [((min(s.blocks), max(s.blocks)) if s.blocks else None, s.output) for s in placement.gpus]


def test_greedy_fit_fills_the_last_card_first():
    # greedyFit walks layers from the last one down, starting on gpus[len-1] and spilling backwards.
    layout = greedy_fit([1, 1, 1, 1, 1], [Gpu(0, 3), Gpu(1, 2)], F32(1), -1)
    assert layout == [[0, [0, 1, 2]], [1, [3, 4]]]


def test_two_a10s_split_q8_0_evenly_with_the_output_on_the_second():
    # One card holds 30 blocks (test_a10_field_notes_case), so assignLayers moves on to two cards;
    # findBestFit's smallest capacity factor that still places all 49 layers splits them 24 / 24 +
    # the output, which lands on the last card of the set (GPU1). Both then report a graph.
    p = plan()
    assert held(p) == [((0, 23), False), ((24, 47), True)]
    assert [share.graph for share in p.gpus] == [190 * MIB, 190 * MIB]
    assert (p.offloaded_layers, p.weights_cpu) == (49, 330_612_736)  # only token_embd stays on the CPU
    assert p.gpus[1].weights == 24 * 662_848_512 + 330_620_928


def test_the_larger_card_is_used_first_and_the_smaller_gets_the_output():
    # buildLayout sorts by free memory, largest first: GPU1 (24 GiB) then GPU0 (16 GiB). greedyFit
    # fills the last of them, GPU0, from the output layer down; the split follows free memory.
    p = plan(frees=(16 * GIB, 24 * GIB))
    assert held(p) == [((30, 47), True), ((0, 29), False)]


def test_the_fewest_cards_that_hold_everything():
    # Q4_K_M fits one A10, so the second card gets nothing and reserves no graph; four A10s still
    # use only two for Q8_0.
    p = plan(Q4)
    assert held(p) == [((0, 47), True), (None, False)]
    assert p.gpus[1].graph == 0
    four = plan(frees=(A10,) * 4)
    assert held(four)[2:] == [(None, False), (None, False)]


def test_cards_too_small_for_everything_drop_the_output_layer():
    p = plan(frees=(8 * GIB, 8 * GIB))
    assert held(p) == [((30, 38), False), ((39, 47), False)]
    assert not p.output_on_gpu


def test_num_gpu_forces_a_count_and_zero_means_no_gpu():
    # assignLayers with requestedLayers 10 stops after 10 layers and, not having placed all, drops
    # the output layer: the last 10 blocks, on the first card that can take them.
    forced = plan(num_gpu=10)
    assert held(forced) == [((38, 47), False), (None, False)]
    # server/sched.go processPending: num_gpu 0 passes no GPU to the load at all.
    cpu = plan(num_gpu=0)
    assert (cpu.gpus, cpu.gpu_layer_space, cpu.offloaded_layers) == ((), None, 0)


def test_per_gpu_rows_in_the_plan():
    from ollama_gpu.planner.hardware import A10 as A10_PROFILE
    from ollama_gpu.planner.plan import PlanInputs, build_plan, format_plan_table

    inputs = PlanInputs.for_profile(A10_PROFILE, Q8, num_ctx=32768, num_predict=20480, gpu_free_vrams=(A10, A10))
    result = build_plan(inputs)
    table = format_plan_table(result)
    assert "GPU0 " in table and "GPU1 " in table and "holds blocks 24-47 and the output layer" in table
    gpus = result.to_dict()["gpus"]
    assert [(g["index"], g["blocks"], g["output_layer"]) for g in gpus] == [(0, [0, 23], False), (1, [24, 47], True)]


def test_the_stack_takes_each_gpus_free_vram():
    import pytest

    from ollama_gpu.config_loader import load_settings
    from ollama_gpu.errors import ConfigError
    from ollama_gpu.stack_plan import build_stack_plan

    settings = load_settings("a10", {"profile": "a10", "hardware": {"gpuFreeVramPerGpu": ["22.5GiB", "22.5GiB"]}})
    plan = build_stack_plan(settings)
    assert [(share.index, share.layers) for share in plan.placement.gpus] == [(0, 24), (1, 25)]
    with pytest.raises(ConfigError, match="gpuFreeVramPerGpu"):
        load_settings("a10", {"profile": "a10", "hardware": {"gpuFreeVram": "22GiB", "gpuFreeVramPerGpu": ["22GiB"]}})
