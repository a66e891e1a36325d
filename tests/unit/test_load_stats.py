"""The load benchmark's arithmetic and stream parsing, on streams recorded from Ollama 0.24.0 (the tiny
test model, native and /v1) and on fabricated ones: percentiles, per-request TTFT and decode,
failure counting, the aggregate rate."""

import pytest

from ollama_gpu.load_protocols import APIS, Chunk
from ollama_gpu.load_stats import INCOMPLETE, RequestOutcome, failed, outcome_from_chunks, percentile, summarize

OLLAMA, OPENAI = APIS["ollama"], APIS["openai"]

# Recorded: POST /api/generate {"prompt": "7. the river", "options": {"num_predict": 3}}.
NATIVE_STREAM = """\
{"model":"tiny:bench","created_at":"2026-12-02T10:32:48.217146036Z","response":"9","done":false}
{"model":"tiny:bench","created_at":"2026-12-02T10:32:48.217171935Z","response":" littl","done":false}
{"model":"tiny:bench","created_at":"2026-12-02T10:32:48.222749779Z","response":" ide","done":false}
{"model":"tiny:bench","created_at":"2026-12-02T10:32:48.222759564Z","response":"","done":true,"done_reason":"length","context":[55,46,258,724,57,479,756],"total_duration":10745710,"load_duration":2506082,"prompt_eval_count":4,"prompt_eval_duration":1130970,"eval_count":3,"eval_duration":5686567}
"""

# Recorded: POST /v1/chat/completions, max_tokens 3, stream_options.include_usage.
OPENAI_STREAM = """\
data: {"id":"chatcmpl-542","object":"chat.completion.chunk","created":1796207568,"model":"tiny:bench","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":" large"},"finish_reason":null}]}

data: {"id":"chatcmpl-542","object":"chat.completion.chunk","created":1796207568,"model":"tiny:bench","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":" ide"},"finish_reason":null}]}

data: {"id":"chatcmpl-542","object":"chat.completion.chunk","created":1796207568,"model":"tiny:bench","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":" mi"},"finish_reason":null}]}

data: {"id":"chatcmpl-542","object":"chat.completion.chunk","created":1796207568,"model":"tiny:bench","system_fingerprint":"fp_ollama","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"length"}]}

data: {"id":"chatcmpl-542","object":"chat.completion.chunk","created":1796207568,"model":"tiny:bench","system_fingerprint":"fp_ollama","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}}

data: [DONE]

"""


def timed(api, text, start=0.0, step=0.5):
    """The stream's chunks, one every `step` seconds after `start` (lines that say nothing take no time)."""
    chunks = [chunk for line in text.splitlines() if (chunk := api.parse_line(line)) is not None]
    return [(start + step * (index + 1), chunk) for index, chunk in enumerate(chunks)]


def test_percentiles_interpolate_between_the_nearest_ranks():
    values = [4.0, 1.0, 3.0, 2.0, 10.0]  # sorted: 1 2 3 4 10
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.95) == pytest.approx(4 + 0.8 * (10 - 4))  # position 3.8
    assert percentile(values, 0.05) == pytest.approx(1 + 0.2 * (2 - 1))  # position 0.2
    assert percentile(values, 0.0) == 1.0 and percentile(values, 1.0) == 10.0
    assert percentile([7.0], 0.95) == 7.0
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError):
        percentile(values, 1.5)


def test_a_recorded_native_stream_gives_ttft_decode_and_the_server_counts():
    outcome = outcome_from_chunks(1, 0.25, timed(OLLAMA, NATIVE_STREAM, start=0.25), 2.5)
    # Text at 0.75, 1.25 and 1.75 s; the server counted 3 tokens: 2 after the first in 1.0 s.
    assert outcome.succeeded
    assert outcome.ttft_s == pytest.approx(0.5)
    assert outcome.decode_tokens_per_s == pytest.approx(2.0)
    assert (outcome.generated_tokens, outcome.prompt_tokens, outcome.tokens_counted_from_chunks) == (3, 4, False)


def test_a_recorded_openai_stream_reads_usage_and_done():
    outcome = outcome_from_chunks(2, 0.0, timed(OPENAI, OPENAI_STREAM), 4.0)
    # Six data events: text in the first three (0.5, 1.0, 1.5 s), usage in the fifth, [DONE] last.
    assert outcome.succeeded
    assert outcome.ttft_s == pytest.approx(0.5)
    assert outcome.decode_tokens_per_s == pytest.approx(2 / 1.0)
    assert (outcome.generated_tokens, outcome.prompt_tokens) == (3, 4)


def test_thinking_counts_as_generated_text_in_both_apis():
    assert OLLAMA.parse_line('{"response":"","thinking":"Hmm","done":false}') == Chunk(generates=True)
    for field in ("reasoning", "reasoning_content"):
        line = 'data: {"choices":[{"delta":{"%s":"Hmm"}}]}' % field
        assert OPENAI.parse_line(line) == Chunk(generates=True)


def test_sse_comments_and_blank_lines_are_not_chunks():
    assert [OPENAI.parse_line(line) for line in ("", ": keep-alive", "event: message")] == [None, None, None]
    assert OLLAMA.parse_line("   ") is None


def test_without_server_counts_text_chunks_are_counted_and_noted():
    stream = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n" * 5 + "data: [DONE]\n"
    outcome = outcome_from_chunks(1, 0.0, timed(OPENAI, stream), 3.0)
    assert (outcome.generated_tokens, outcome.tokens_counted_from_chunks) == (5, True)
    assert outcome.decode_tokens_per_s == pytest.approx(4 / 2.0)
    assert summarize(1, [outcome]).notes == ["the server gave no token counts: text chunks were counted"]


@pytest.mark.parametrize(
    ("api", "stream", "reason"),
    [
        (OLLAMA, '{"response":"a","done":false}\n{"error":"an error was encountered while running the model"}\n',
         "an error was encountered while running the model"),
        (OPENAI, 'data: {"choices":[{"delta":{"content":"a"}}]}\ndata: {"error":{"message":"upstream overloaded"}}\n',
         "upstream overloaded"),
        (OLLAMA, '{"response":"a","done":false}\n{"response":"b","done":false}\n', INCOMPLETE),
        (OPENAI, 'data: {"choices":[{"delta":{"content":"a"}}]}\n', INCOMPLETE),
        (OLLAMA, "<html>bad gateway</html>\n", "not a JSON line: '<html>bad gateway</html>'"),
    ],
)  # fmt: skip
def test_a_stream_that_breaks_or_reports_an_error_is_a_failure_with_its_reason(api, stream, reason):
    outcome = outcome_from_chunks(1, 0.0, timed(api, stream), 1.0)
    assert not outcome.succeeded and outcome.error == reason
    assert outcome.generated_tokens == 0 and outcome.ttft_s is None


def ok(stream, started, finished, tokens, ttft, rate):
    return RequestOutcome(stream=stream, started_s=started, finished_s=finished, ttft_s=ttft, generated_tokens=tokens,
                          prompt_tokens=500, decode_tokens_per_s=rate)  # fmt: skip


def test_a_level_counts_every_request_and_rates_only_the_successful_tokens():
    outcomes = [
        ok(1, 0.0, 4.0, 64, 0.5, 20.0),
        ok(2, 0.1, 5.0, 64, 1.5, 15.0),
        failed(3, 0.2, 0.3, "HTTP 503: server busy"),
        ok(1, 4.0, 8.0, 32, 0.7, 10.0),
        failed(2, 5.0, 6.0, "HTTP 503: server busy"),
        failed(3, 0.3, 10.0, "timed out (--timeout)"),
    ]
    summary = summarize(3, outcomes)
    assert (summary.requests, summary.succeeded, summary.failed) == (6, 3, 3)
    assert summary.failures == {"HTTP 503: server busy": 2, "timed out (--timeout)": 1}
    # 64 + 64 + 32 tokens from 0.0 s (first start) to 10.0 s (last end, a failure's: it held a stream).
    assert summary.wall_s == pytest.approx(10.0)
    assert summary.generated_tokens == 160
    assert summary.aggregate_tokens_per_s == pytest.approx(16.0)
    assert summary.ttft_p50_s == pytest.approx(0.7)
    assert summary.ttft_p95_s == pytest.approx(0.7 + 0.9 * (1.5 - 0.7))  # position 1.9 of [0.5, 0.7, 1.5]
    assert summary.decode_p50_tokens_per_s == pytest.approx(15.0)
    assert summary.decode_p95_tokens_per_s == pytest.approx(10.0 + 0.1 * (15.0 - 10.0))  # the slow tail
    assert summary.prompt_tokens_p50 == 500.0


def test_a_level_where_everything_failed_has_no_rates():
    summary = summarize(2, [failed(1, 0.0, 1.0, "connection failed: ConnectError")] * 2)
    assert (summary.requests, summary.succeeded, summary.failed) == (2, 0, 2)
    assert summary.aggregate_tokens_per_s is None and summary.ttft_p50_s is None and summary.decode_p50_tokens_per_s is None


def test_the_aggregate_is_tokens_over_wall_time_whatever_the_stream_count():
    one = summarize(1, [ok(1, 0.0, 2.0, 40, 0.2, 25.0), ok(1, 2.0, 4.0, 40, 0.2, 25.0)])
    two = summarize(2, [ok(1, 0.0, 4.0, 40, 0.2, 12.5), ok(2, 0.0, 4.0, 40, 0.2, 12.5),
                        ok(1, 4.0, 8.0, 40, 0.2, 12.5), ok(2, 4.0, 8.0, 40, 0.2, 12.5)])  # fmt: skip
    assert one.aggregate_tokens_per_s == pytest.approx(20.0)
    assert two.aggregate_tokens_per_s == pytest.approx(20.0)  # 160 tokens in 8 s: batching bought nothing here
    assert two.decode_p50_tokens_per_s < one.decode_p50_tokens_per_s
