"""The timing arithmetic and formatting scripts/smoke and scripts/bench share; no server needed."""

import math

import pytest

from ollama_gpu.generation_stats import (
    Spread,
    format_number,
    format_spread,
    generation_figures,
    parse_parameters,
    render_table,
    seconds,
    tokens_per_second,
)

# The final chunk of a real 0.24.0 generation (tiny model, 1,024-token prompt), trimmed to its timings.
FINAL_CHUNK = {
    "done": True,
    "done_reason": "length",
    "total_duration": 5_890_000_000,
    "load_duration": 1_847_274,
    "prompt_eval_count": 1024,
    "prompt_eval_duration": 1_949_222_160,
    "eval_count": 64,
    "eval_duration": 3_922_397_224,
}


def test_rates_come_from_counts_over_nanosecond_durations() -> None:
    assert tokens_per_second(100, 2_000_000_000) == 50
    assert tokens_per_second(1, 1) == 1e9


@pytest.mark.parametrize("count, duration", [(None, 10), (0, 10), (10, None), (10, 0), (10, -5)])
def test_an_untimed_phase_has_no_rate_rather_than_an_infinite_one(count, duration) -> None:
    assert tokens_per_second(count, duration) is None


def test_seconds_converts_nanoseconds_and_keeps_absence() -> None:
    assert seconds(1_500_000_000) == 1.5
    assert seconds(0) == 0
    assert seconds(None) is None


def test_generation_figures_separate_prefill_from_decode() -> None:
    figures = generation_figures(FINAL_CHUNK)
    assert figures["prompt_tokens"] == 1024
    assert figures["prefill_tokens_per_s"] == pytest.approx(525.34, rel=1e-4)
    assert figures["generated_tokens"] == 64
    assert figures["decode_tokens_per_s"] == pytest.approx(16.317, rel=1e-4)
    assert figures["load_s"] == pytest.approx(0.001847274)
    assert figures["total_s"] == pytest.approx(5.89)


def test_generation_figures_of_a_response_without_timings_are_all_absent() -> None:
    assert set(generation_figures({}).values()) == {None}


def test_spread_is_median_and_range_ignoring_missing_values() -> None:
    spread = Spread.of([3.0, None, 1.0, 10.0])
    assert (spread.median, spread.minimum, spread.maximum) == (3.0, 1.0, 10.0)
    assert Spread.of([4, 2]).median == 3
    assert spread.to_dict() == {"median": 3.0, "min": 1.0, "max": 10.0}


def test_spread_of_nothing_is_none() -> None:
    assert Spread.of([]) is None
    assert Spread.of([None, None]) is None


@pytest.mark.parametrize(
    "value, text",
    [(12345.6, "12,346"), (100, "100"), (45.67, "45.7"), (10, "10.0"), (3.14159, "3.14"), (0.004, "0.00"),
     (None, "–"), (math.inf, "–"), (math.nan, "–")],
)  # fmt: skip
def test_numbers_show_about_three_significant_figures(value, text) -> None:
    assert format_number(value) == text


def test_a_spread_shows_its_range_only_when_the_repeats_differ_visibly() -> None:
    assert format_spread(Spread(525.3, 511.0, 958.2)) == "525 (511–958)"
    assert format_spread(Spread(16.31, 16.3, 16.33)) == "16.3"
    assert format_spread(None) == "–"


def test_table_columns_align_and_a_note_row_runs_across() -> None:
    table = render_table(
        ["size", "TTFT s", "notes"],
        [["256", "0.70 (0.69–0.71)", ""], ["12288", "skipped: exceeds num_ctx 8192"]],
    )
    assert table.splitlines() == [
        "size   TTFT s            notes",
        "256    0.70 (0.69–0.71)",
        "12288  skipped: exceeds num_ctx 8192",
    ]


def test_show_parameters_parse_into_typed_values() -> None:
    # As Ollama 0.24 formats them: name padded to 30 columns, the value in Go's %#v.
    text = "\n".join(
        [
            f"{'num_ctx':<30} 32768",
            f"{'num_keep':<30} -1",
            f"{'use_mmap':<30} false",
            f"{'temperature':<30} 0.6",
            f"{'stop':<30} \"<|im_start|>\"",
            f"{'stop':<30} \"<|im_end|>\"",
            "",
        ]
    )
    assert parse_parameters(text) == {
        "num_ctx": 32768,
        "num_keep": -1,
        "use_mmap": False,
        "temperature": 0.6,
        "stop": ["<|im_start|>", "<|im_end|>"],
    }


def test_show_parameters_keep_a_value_json_cannot_read_as_text() -> None:
    assert parse_parameters('stop "\\x00end"') == {"stop": "\\x00end"}


def test_a_model_without_parameters_has_none() -> None:
    assert parse_parameters(None) == {}
    assert parse_parameters("") == {}
