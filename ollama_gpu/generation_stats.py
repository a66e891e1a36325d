"""Pure arithmetic and formatting over what Ollama's API returns, shared by scripts/smoke and
scripts/bench. Nothing here talks to a server, so it is unit-tested on its own.

A generate response times its two phases separately, in nanoseconds: prompt_eval_* is the prefill
(the whole prompt in batches), eval_* the decode (one token at a time). They are bound by different
things (compute vs memory bandwidth) and the planner predicts them separately, so they are never
folded into one rate.
"""

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

NANOSECONDS_PER_SECOND = 1_000_000_000


def tokens_per_second(count: Optional[int], duration_ns: Optional[int]) -> Optional[float]:
    """None when the server did not time the phase (a zero duration happens when a phase had
    nothing to do), so a missing figure is never shown as infinitely fast."""
    if not count or not duration_ns or duration_ns <= 0:
        return None
    return count * NANOSECONDS_PER_SECOND / duration_ns


def seconds(duration_ns: Optional[int]) -> Optional[float]:
    return None if duration_ns is None else duration_ns / NANOSECONDS_PER_SECOND


def generation_figures(response: Mapping[str, Any]) -> dict[str, Optional[float]]:
    """The figures of one finished generation (the final chunk of a stream, or a whole response)."""
    return {
        "prompt_tokens": response.get("prompt_eval_count"),
        "prefill_tokens_per_s": tokens_per_second(response.get("prompt_eval_count"), response.get("prompt_eval_duration")),
        "generated_tokens": response.get("eval_count"),
        "decode_tokens_per_s": tokens_per_second(response.get("eval_count"), response.get("eval_duration")),
        "load_s": seconds(response.get("load_duration")),
        "total_s": seconds(response.get("total_duration")),
    }


@dataclass(frozen=True)
class Spread:
    """Median and range over repeats: the median resists one slow run, the range shows the noise."""

    median: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, values: Iterable[Optional[float]]) -> Optional["Spread"]:
        present = [value for value in values if value is not None]
        if not present:
            return None
        return cls(statistics.median(present), min(present), max(present))

    def to_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.minimum, "max": self.maximum}


def format_number(value: Optional[float]) -> str:
    """Three significant figures or so: rates span 5 to 50,000 tokens/s and nobody reads more."""
    if value is None or not math.isfinite(value):
        return "–"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_spread(spread: Optional[Spread]) -> str:
    if spread is None:
        return "–"
    median = format_number(spread.median)
    low, high = format_number(spread.minimum), format_number(spread.maximum)
    return median if low == high else f"{median} ({low}–{high})"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; a row shorter than the header (a note) runs on
    across the remaining columns."""
    widths = [len(header) for header in headers]
    for row in rows:
        sized = row if len(row) == len(headers) else row[:-1]
        widths = [max(width, len(cell)) for width, cell in zip(widths, sized)] + widths[len(sized):]
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def parse_parameters(text: Optional[str]) -> dict[str, Any]:
    """/api/show's `parameters`: one `name value` line per setting, the value formatted by Go's %#v
    (strings quoted, numbers and booleans bare), a list-valued option (stop) repeated once per item."""
    parameters: dict[str, Any] = {}
    for line in (text or "").splitlines():
        name, _, raw = line.strip().partition(" ")
        if not name:
            continue
        value = _parameter_value(raw.strip())
        if name in parameters:
            previous = parameters[name]
            parameters[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            parameters[name] = value
    return parameters


def _parameter_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        # Go escapes a few characters differently from JSON; the text is still the best answer.
        return raw.strip('"')
