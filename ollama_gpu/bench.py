"""`scripts/bench`: prefill, decode and time to first token at the prompt sizes that matter.

    scripts/bench [--stack a10] [--url URL] [--model ALIAS] [--sizes 1024,4096,12288] [--repeat 3]
                  [--num-ctx N] [--num-predict N] [--timeout S] [--json]
    scripts/bench --concurrency 1,2,4,8 ...   (concurrent load; see load.py)

The field notes' lesson is that a long first prompt, not decode speed, decides whether a client with
a fixed timeout (5 minutes for Cherry Studio) gets an answer, so each size is measured as a client
sees it: wall time to the first streamed token, beside the server's own prefill and decode rates,
and the verdict against the stack's client.timeoutSeconds.

Prompts are synthetic English-like text. Their length in tokens depends on the model's tokenizer, so
one calibration request (which also absorbs any model load) measures tokens per word, and every later
run refines it; the reported prompt size is the server's prompt_eval_count. Every prompt opens with
its own seed, so it shares nothing with the one before it beyond the chat template's first tokens:
Ollama's prompt cache would otherwise skip most of the prefill. That prevention is what counts on
Ollama 0.24, whose Go engine reports prompt_eval_count as the whole prompt even when part of it came
from the cache (runner/ollamarunner: numPromptInputs is taken before the cache slot is loaded);
servers that count only the evaluated tokens get the run flagged.

When --model is the stack's alias and the planner is installed, its figures for the stack stand
beside the measurements: the decode bound and the prefill rate it assumed.
"""

import argparse
import itertools
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, TextIO

import httpx
import ollama

from ollama_gpu import generation_stats, load
from ollama_gpu.errors import UserError
from ollama_gpu.generation_stats import Spread, format_number, format_spread
from ollama_gpu.settings import Settings
from ollama_gpu.stack_plan import build_stack_plan
from ollama_gpu.smoke import (
    Target,
    add_target_arguments,
    connect,
    describe_model,
    resolve_target,
    run_cli,
    server_version,
    talking_to,
)

DEFAULT_SIZES = (1024, 4096, 12288)
DEFAULT_REPEATS = 3
DEFAULT_NUM_PREDICT = 64
# The bench has to outlast the client's timeout to report by how much a prompt exceeds it.
DEFAULT_TIMEOUT_S = 3600.0
# English through a BPE tokenizer; only the first request relies on it.
TOKENS_PER_WORD_GUESS = 1.3
SIZE_TOLERANCE = 0.10
# Tokenization varies by a few percent between samples of the same text style; a shortfall this
# large means the server skipped part of the prompt.
CACHED_BELOW = 0.75

_DETERMINERS = "the a this that every each our their some one another no".split()
_ADJECTIVES = (
    "quiet bright narrow heavy early careful broken distant golden simple modern ancient rapid gentle"
    " hollow steady crowded silent frozen restless clever plain curious honest patient sudden famous"
    " rough shallow wooden empty"
).split()
_NOUNS = (
    "river harbor engine garden teacher market lantern village signal meadow ledger carpet bridge"
    " window orchard captain letter factory kitchen forest island ticket mirror valley station"
    " painter compass library tower blanket farmer journey bottle cloud minute question answer"
    " number pattern morning winter summer doctor student machine story country road"
).split()
_VERBS = (
    "carried watched opened followed painted measured gathered crossed repaired described remembered"
    " borrowed noticed visited counted cleaned covered delivered explained finished lifted mended"
    " ordered pushed reached shared traced turned wrapped"
).split()
_PREPOSITIONS = "near under beside behind across through beyond above below toward against".split()
_ADVERBS = (
    "slowly quietly later often suddenly carefully rarely yesterday again afterwards gladly briefly"
).split()
# Each sentence shape is a sequence of word classes; varying shapes keeps the text from repeating.
_SENTENCE_SHAPES = (
    ("det", "adj", "noun", "verb", "det", "noun", "prep", "det", "noun"),
    ("adv,", "det", "noun", "verb", "det", "adj", "noun"),
    ("det", "noun", "prep", "det", "noun", "verb", "det", "noun", "adv"),
    ("det", "adj", "noun", "and", "det", "noun", "verb", "prep", "det", "adj", "noun"),
    ("det", "noun", "verb", "det", "adj", "adj", "noun"),
)
_WORD_CLASSES = {
    "det": _DETERMINERS, "adj": _ADJECTIVES, "noun": _NOUNS, "verb": _VERBS,
    "prep": _PREPOSITIONS, "adv": _ADVERBS, "adv,": [word + "," for word in _ADVERBS], "and": ["and"],
}  # fmt: skip


def synthetic_prompt(words: int, seed: int) -> str:
    """Deterministic English-like text of exactly WORDS words, opening with SEED so that no two
    prompts of a run share a prefix."""
    rng = random.Random(seed)
    text = [f"{seed}."]
    sentence: list[str] = []
    while len(text) < words:
        if not sentence:
            shape = rng.choice(_SENTENCE_SHAPES)
            sentence = [rng.choice(_WORD_CLASSES[word_class]) for word_class in shape]
            sentence[0] = sentence[0].capitalize()
            sentence[-1] += "."
        text.append(sentence.pop(0))
    return " ".join(text)


@dataclass
class PromptSizer:
    """Words to ask for to get a prompt of a given token count. The ratio is pooled over every run
    so far: one sample's ratio swings by several percent (the words drawn differ), the pool's less."""

    measured_words: int = 0
    measured_tokens: int = 0

    @property
    def tokens_per_word(self) -> float:
        return self.measured_tokens / self.measured_words if self.measured_words else TOKENS_PER_WORD_GUESS

    def words_for(self, tokens: int) -> int:
        return max(1, round(tokens / self.tokens_per_word))

    def expected_tokens(self, words: int) -> float:
        return words * self.tokens_per_word

    def learn(self, words: int, measured_tokens: int) -> None:
        self.measured_words += words
        self.measured_tokens += measured_tokens


@dataclass
class Run:
    seed: int
    words: int
    prompt_tokens: int
    ttft_s: Optional[float]
    prefill_tokens_per_s: Optional[float]
    decode_tokens_per_s: Optional[float]
    generated_tokens: int
    load_s: Optional[float]
    notes: list[str] = field(default_factory=list)


@dataclass
class SizeResult:
    target: int
    runs: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def spread(self, figure: str) -> Optional[Spread]:
        return Spread.of(getattr(run, figure) for run in self.runs)

    def to_dict(self, client_timeout_s: float) -> dict[str, Any]:
        figures = ("prompt_tokens", "ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s")
        summary = {name: spread.to_dict() for name in figures if (spread := self.spread(name))}
        return {
            "target_tokens": self.target,
            "runs": [asdict(run) for run in self.runs],
            "summary": summary,
            "ttft_vs_client_timeout": ttft_verdict(self.spread("ttft_s"), client_timeout_s),
            "notes": self.notes,
        }


def ttft_verdict(ttft: Optional[Spread], client_timeout_s: float) -> Optional[str]:
    """Judged on the slowest repeat: a client that times out once has lost that conversation."""
    if ttft is None:
        return None
    return "fits" if ttft.maximum <= client_timeout_s else "exceeds"


def planned_bounds(settings: Settings) -> Optional[dict[str, float]]:
    """The planner's figures for the stack; None when it has no plan (model not in its catalog)."""
    try:
        plan = build_stack_plan(settings)
    except UserError:
        return None
    if plan is None:
        return None
    return {
        "decode_tokens_per_s": plan.decode.tokens_per_s,
        "prefill_tokens_per_s": round(plan.prefill_tokens_per_s, 1),
        "max_prompt_tokens": plan.context.max_prompt_tokens,
    }


class ProgressBar:
    """One line on stderr, redrawn in place on a terminal and one line per step elsewhere (a log)."""

    WIDTH = 24

    def __init__(self, total: int, stream: TextIO = sys.stderr):
        self.total, self.done, self.stream = total, 0, stream
        self.redraw = stream.isatty()

    def show(self, label: str) -> None:
        filled = self.WIDTH * self.done // max(self.total, 1)
        line = f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] {self.done}/{self.total} {label}"
        self.stream.write(f"\r{line:<78}" if self.redraw else f"{line}\n")
        self.stream.flush()

    def advance(self) -> None:
        self.done += 1

    def close(self) -> None:
        if self.redraw:
            self.stream.write("\r" + " " * 78 + "\r")
            self.stream.flush()


def timed_generation(client: ollama.Client, model: str, prompt: str, options: dict[str, int]) -> tuple[Optional[float], dict[str, Any]]:
    """Streams one generation: seconds until the first generated text (thinking counts: a thinking
    model's answer starts there) and the final chunk, which carries the server's timings."""
    started = time.monotonic()
    first_token_s = None
    final: dict[str, Any] = {}
    for chunk in client.generate(model=model, prompt=prompt, options=options, stream=True):
        if first_token_s is None and (chunk.response or chunk.thinking):
            first_token_s = time.monotonic() - started
        if chunk.done:
            final = chunk.model_dump()
    return first_token_s, final


def run_notes(prompt_tokens: int, expected_tokens: float, num_ctx: int) -> list[str]:
    """What makes a run's prefill figure mean something other than `prompt_tokens` computed."""
    if prompt_tokens >= num_ctx:
        return [f"the server truncated the prompt to num_ctx ({num_ctx} tokens)"]
    if prompt_tokens < CACHED_BELOW * expected_tokens:
        return [f"only {prompt_tokens} of about {expected_tokens:.0f} tokens were prefilled: the rest came from the prompt cache"]
    return []


@dataclass
class Bench:
    target: Target
    sizes: list[int]
    repeats: int
    num_ctx: int
    num_predict: int

    @property
    def options(self) -> dict[str, int]:
        return {"num_ctx": self.num_ctx, "num_predict": self.num_predict}

    def fits(self, size: int) -> bool:
        return size + self.num_predict <= self.num_ctx

    def measure(self, client: ollama.Client, sizer: PromptSizer, target_tokens: int, seed: int) -> Run:
        words = sizer.words_for(target_tokens)
        expected = sizer.expected_tokens(words)
        ttft, final = timed_generation(client, self.target.model, synthetic_prompt(words, seed), self.options)
        figures = generation_stats.generation_figures(final)
        prompt_tokens = int(figures["prompt_tokens"] or 0)
        notes = run_notes(prompt_tokens, expected, self.num_ctx)
        if not notes:
            sizer.learn(words, prompt_tokens)
        return Run(
            seed=seed, words=words, prompt_tokens=prompt_tokens, ttft_s=ttft,
            prefill_tokens_per_s=figures["prefill_tokens_per_s"], decode_tokens_per_s=figures["decode_tokens_per_s"],
            generated_tokens=int(figures["generated_tokens"] or 0), load_s=figures["load_s"], notes=notes,
        )  # fmt: skip

    def run(self, client: ollama.Client, progress: ProgressBar) -> list[SizeResult]:
        sizer = PromptSizer()
        fitting = [size for size in self.sizes if self.fits(size)]
        seeds = itertools.count(1)
        if fitting:
            progress.show(f"calibrating on a {min(fitting)}-token prompt")
            self.measure(client, sizer, min(fitting), next(seeds))
            progress.advance()
        results = []
        timed_out = False
        for size in self.sizes:
            result = SizeResult(size)
            results.append(result)
            if not self.fits(size):
                result.notes.append(f"skipped: {size} prompt + {self.num_predict} generated tokens exceed num_ctx {self.num_ctx}")
                continue
            if timed_out:
                result.notes.append("skipped: an earlier prompt timed out")
                continue
            for repeat in range(1, self.repeats + 1):
                progress.show(f"{size}-token prompt, run {repeat}/{self.repeats}")
                try:
                    result.runs.append(self.measure(client, sizer, size, next(seeds)))
                except httpx.TimeoutException:
                    # The server keeps computing a prompt its client gave up on, so a bigger one
                    # would only queue behind it.
                    result.notes.append(f"timed out: no answer within {self.target.timeout_s:g} s (--timeout)")
                    timed_out = True
                    break
                progress.advance()
            self.annotate(result)
        return results

    def annotate(self, result: SizeResult) -> None:
        result.notes.extend(dict.fromkeys(note for run in result.runs for note in run.notes))
        measured = result.spread("prompt_tokens")
        if measured and abs(measured.median - result.target) > SIZE_TOLERANCE * result.target:
            result.notes.append(f"prompt size missed the target by more than {SIZE_TOLERANCE:.0%}")


def run_bench(target: Target, sizes: list[int], repeats: int, num_predict: int, num_ctx: Optional[int] = None) -> dict[str, Any]:
    client = connect(target)
    with talking_to(target):
        version = server_version(client)
        model = describe_model(client, target.model, target.url)
        # The model's own num_ctx keeps the bench on the context the server already has loaded; on
        # a deployed stack it equals the stack's numCtx, the fallback for a model without one.
        num_ctx = num_ctx or int(model["parameters"].get("num_ctx") or target.settings.model.parameters.num_ctx)
        bench = Bench(target, sizes, repeats, num_ctx, num_predict)
        measured_sizes = [size for size in sizes if bench.fits(size)]
        progress = ProgressBar((1 if measured_sizes else 0) + len(measured_sizes) * repeats)
        try:
            results = bench.run(client, progress)
        finally:
            progress.close()
    client_timeout = target.settings.client.timeout_seconds
    plan = planned_bounds(target.settings) if target.is_stack_alias else None
    return {
        "url": target.url,
        "version": version,
        "model": target.model,
        "details": model["details"],
        "num_ctx": num_ctx,
        "num_predict": num_predict,
        "repeats": repeats,
        "client_timeout_s": client_timeout,
        "plan": plan,
        "sizes": [plan_notes(result.to_dict(client_timeout), plan) for result in results],
    }


def plan_notes(size: dict[str, Any], plan: Optional[dict[str, Any]]) -> dict[str, Any]:
    ceiling = plan and plan.get("max_prompt_tokens")
    if ceiling and size["target_tokens"] > ceiling:
        size["notes"].append(f"above the plan's prompt ceiling of {ceiling} tokens")
    return size


def format_table(report: dict[str, Any]) -> str:
    plan = report["plan"] or {}
    timeout = report["client_timeout_s"]

    def with_plan(header: str, key: str, relation: str) -> str:
        value = plan.get(key)
        return f"{header} (plan {relation}{format_number(value)})" if value else header

    headers = [
        "size", "prompt tokens", "TTFT s", f"vs {timeout:g} s timeout",
        with_plan("prefill tok/s", "prefill_tokens_per_s", "~"), with_plan("decode tok/s", "decode_tokens_per_s", "≤"), "notes",
    ]  # fmt: skip
    rows = []
    for size in report["sizes"]:
        summary = {name: Spread(spread["median"], spread["min"], spread["max"]) for name, spread in size["summary"].items()}
        notes = "; ".join(size["notes"])
        if not size["runs"]:
            rows.append([str(size["target_tokens"]), notes])
            continue
        rows.append([
            str(size["target_tokens"]),
            format_spread(summary.get("prompt_tokens")),
            format_spread(summary.get("ttft_s")),
            size["ttft_vs_client_timeout"] or "–",
            format_spread(summary.get("prefill_tokens_per_s")),
            format_spread(summary.get("decode_tokens_per_s")),
            notes,
        ])  # fmt: skip
    title = (
        f"Ollama {report['version']} at {report['url']}, model {report['model']}: num_ctx {report['num_ctx']}, "
        f"num_predict {report['num_predict']}, median (min–max) of {report['repeats']} runs per size"
    )
    table = f"{title}\n{generation_stats.render_table(headers, rows)}"
    rate = measured_prefill_override(report)
    if rate is None:
        return table
    return (
        f"{table}\nTo plan with this host's measured prefill instead of the derived one: "
        f"pulumi config set --path ollama-gpu:hardware.prefillTokensPerSecond {rate:g}"
    )


def measured_prefill_override(report: dict[str, Any]) -> Optional[float]:
    """The prefill rate to feed back as hardware.prefillTokensPerSecond: the median of the largest
    prompt size measured, the one closest to the long first prompts the context budget is about."""
    measured = [size for size in report["sizes"] if size["runs"] and "prefill_tokens_per_s" in size["summary"]]
    if not measured:
        return None
    largest = max(measured, key=lambda size: size["target_tokens"])
    return round(largest["summary"]["prefill_tokens_per_s"]["median"], 1)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of token counts") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive token counts")
    return sizes


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    add_target_arguments(parser, f"seconds to wait for each answer (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--sizes", type=_sizes, help="prompt sizes in tokens (default 1024,4096,12288)")
    parser.add_argument("--repeat", type=_positive, help=f"runs per size, each with a fresh prompt (default {DEFAULT_REPEATS})")
    parser.add_argument("--num-ctx", type=_positive, help="context window for the requests (default: the model's num_ctx, else the stack's numCtx)")
    parser.add_argument("--num-predict", type=_positive, default=DEFAULT_NUM_PREDICT, help=f"tokens generated per run (default {DEFAULT_NUM_PREDICT})")
    load.add_load_arguments(parser, _positive)
    args = parser.parse_args(argv)
    if args.concurrency:
        single_stream_only = [flag for flag, value in (("--sizes", args.sizes), ("--repeat", args.repeat), ("--num-ctx", args.num_ctx)) if value]
        if single_stream_only:
            parser.error(f"{', '.join(single_stream_only)} belong to the single-stream bench, not to --concurrency")
        return run_cli("bench", lambda: produce_load(args), load.format_load_table, args.json)
    if args.api != "ollama" or args.api_key_env or args.ca_cert:
        parser.error("--api, --api-key-env and --ca-cert belong to the load benchmark: add --concurrency")

    def produce() -> dict[str, Any]:
        target = resolve_target(args, default_timeout_s=DEFAULT_TIMEOUT_S)
        return run_bench(target, args.sizes or list(DEFAULT_SIZES), args.repeat or DEFAULT_REPEATS, args.num_predict, args.num_ctx)

    return run_cli("bench", produce, format_table, args.json)


def produce_load(args: argparse.Namespace) -> dict[str, Any]:
    credentials = load.read_api_key(args.api_key_env or load.DEFAULT_API_KEY_ENV, required=bool(args.api_key_env))
    target = resolve_target(args, default_timeout_s=DEFAULT_TIMEOUT_S)
    spec = load.LoadSpec(load.APIS[args.api], args.concurrency, args.requests_per_stream, args.prompt_tokens, args.num_predict)
    words = PromptSizer().words_for(args.prompt_tokens)
    return load.run_load(target, spec, credentials, args.ca_cert, synthetic_prompt, words, ProgressBar)


if __name__ == "__main__":
    sys.exit(main())
