"""Figures of a load run, from the timed chunks of each request: pure arithmetic, unit-tested on
recorded and fabricated streams.

Per request, as its client sees it: time to the first generated text (TTFT) and the decode rate
after it, (tokens - 1) / (last text - first text), so queueing and prefill stay in TTFT. Tokens
are the server's count (eval_count, usage.completion_tokens); a server that gives none has its
text chunks counted instead (one token each on Ollama and llama-server), and the report says so.

Per concurrency level: every request ends as a success or as a failure with its reason, so
requests = succeeded + failed; the aggregate rate is the successful requests' generated tokens
over the level's wall time, from its first request's start to its last one's end (prefill and
queueing included: it is what the server delivered). Percentiles interpolate between the two
nearest ranks; p95 is the slow tail: the 95th percentile of TTFT, and for decode the rate that 95%
of requests beat (the 5th percentile of the rates).
"""

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from ollama_gpu.load_protocols import Chunk

INCOMPLETE = "the stream ended before the answer was complete"


@dataclass(frozen=True)
class RequestOutcome:
    """One request. Times are seconds from the level's start; error None means it succeeded."""

    stream: int
    started_s: float
    finished_s: float
    ttft_s: Optional[float] = None
    generated_tokens: int = 0
    prompt_tokens: Optional[int] = None
    decode_tokens_per_s: Optional[float] = None
    tokens_counted_from_chunks: bool = False
    error: Optional[str] = None

    @property
    def succeeded(self) -> bool:
        return self.error is None


def outcome_from_chunks(stream: int, started_s: float, timed_chunks: Sequence[tuple[float, Chunk]], finished_s: float) -> RequestOutcome:
    """A request's outcome from its chunks, each with its arrival time (seconds, level clock)."""
    base = {"stream": stream, "started_s": started_s, "finished_s": finished_s}
    errors = [chunk.error for _, chunk in timed_chunks if chunk.error]
    if errors:
        return RequestOutcome(**base, error=errors[0])
    if not any(chunk.done for _, chunk in timed_chunks):
        return RequestOutcome(**base, error=INCOMPLETE)
    text_times = [at for at, chunk in timed_chunks if chunk.generates]
    counted = [chunk.generated_tokens for _, chunk in timed_chunks if chunk.generated_tokens is not None]
    prompts = [chunk.prompt_tokens for _, chunk in timed_chunks if chunk.prompt_tokens is not None]
    tokens = counted[-1] if counted else len(text_times)
    decode = None
    if tokens >= 2 and len(text_times) >= 2 and text_times[-1] > text_times[0]:
        decode = (tokens - 1) / (text_times[-1] - text_times[0])
    return RequestOutcome(
        **base,
        ttft_s=text_times[0] - started_s if text_times else None,
        generated_tokens=tokens,
        prompt_tokens=prompts[-1] if prompts else None,
        decode_tokens_per_s=decode,
        tokens_counted_from_chunks=not counted,
    )


def failed(stream: int, started_s: float, finished_s: float, reason: str) -> RequestOutcome:
    """A request that got no stream at all (refused, HTTP error, timeout, dropped connection)."""
    return RequestOutcome(stream=stream, started_s=started_s, finished_s=finished_s, error=reason)


def percentile(values: Iterable[float], fraction: float) -> Optional[float]:
    """Linear interpolation between the closest ranks (numpy's default); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be within 0..1, not {fraction}")
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class LevelSummary:
    concurrency: int
    requests: int
    succeeded: int
    failed: int
    failures: dict[str, int]
    wall_s: float
    generated_tokens: int
    aggregate_tokens_per_s: Optional[float]
    ttft_p50_s: Optional[float]
    ttft_p95_s: Optional[float]
    decode_p50_tokens_per_s: Optional[float]
    decode_p95_tokens_per_s: Optional[float]
    prompt_tokens_p50: Optional[float]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(concurrency: int, outcomes: Sequence[RequestOutcome]) -> LevelSummary:
    done = [outcome for outcome in outcomes if outcome.succeeded]
    wall = max((o.finished_s for o in outcomes), default=0.0) - min((o.started_s for o in outcomes), default=0.0)
    tokens = sum(outcome.generated_tokens for outcome in done)
    ttfts = [o.ttft_s for o in done if o.ttft_s is not None]
    rates = [o.decode_tokens_per_s for o in done if o.decode_tokens_per_s is not None]
    prompts = [float(o.prompt_tokens) for o in done if o.prompt_tokens is not None]
    notes = []
    if any(outcome.tokens_counted_from_chunks for outcome in done):
        notes.append("the server gave no token counts: text chunks were counted")
    return LevelSummary(
        concurrency=concurrency,
        requests=len(outcomes),
        succeeded=len(done),
        failed=len(outcomes) - len(done),
        failures=dict(Counter(o.error for o in outcomes if o.error is not None).most_common()),
        wall_s=wall,
        generated_tokens=tokens,
        aggregate_tokens_per_s=tokens / wall if done and wall > 0 else None,
        ttft_p50_s=percentile(ttfts, 0.50),
        ttft_p95_s=percentile(ttfts, 0.95),
        decode_p50_tokens_per_s=percentile(rates, 0.50),
        decode_p95_tokens_per_s=percentile(rates, 0.05),
        prompt_tokens_p50=percentile(prompts, 0.50),
        notes=notes,
    )
