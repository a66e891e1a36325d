"""The lab sweep's point syntax and its emulation of a smaller card's free VRAM."""

import pytest

from ollama_gpu.gpulab.sweep import GIB, Point, emulated_overhead, parse_points


def test_points_name_cards_sizes_and_overrides():
    assert parse_points("a10,v100,full,14,a10/b2048,8/kq8_0") == [
        Point("a10", 22.5),
        Point("v100", 31.5),
        Point("full", None),
        Point("14GiB", 14.0),
        Point("a10/b2048", 22.5, num_batch=2048),
        Point("8GiB/kq8_0", 8.0, kv_cache_type="q8_0"),
    ]


def test_overhead_leaves_what_the_target_card_leaves_after_the_recipe_overhead():
    free = 143_156 << 20  # the H200's free VRAM before a load, as nvidia-smi reported it
    overhead = emulated_overhead(free, 22.5)
    # Ollama's layer space is free - 457 MiB - overhead - graph; with this overhead it is
    # 22.5 GiB - 1 GiB - 457 MiB - graph, as on an A10 with the recipe's OLLAMA_GPU_OVERHEAD.
    assert free - overhead == round(22.5 * GIB) - GIB
    assert emulated_overhead(free, None) == 0
    assert emulated_overhead(10 * GIB, 22.5) == 0  # a card larger than this GPU cannot be emulated


@pytest.mark.parametrize("text", ["huge", "a10/bx"])
def test_malformed_points_are_refused(text):
    with pytest.raises(ValueError):
        parse_points(text)
