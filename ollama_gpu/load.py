"""`scripts/bench --concurrency 1,2,4,8`: the load a team puts on one host or on the router.

    scripts/bench --concurrency 1,2,4,8 [--api ollama|openai] [--url URL] [--model NAME]
                  [--requests-per-stream 3] [--prompt-tokens 512] [--num-predict 64]
                  [--api-key-env OLLAMA_GPU_API_KEY] [--ca-cert FILE] [--timeout S] [--json]

At each concurrency N, N streams each send --requests-per-stream requests one after another
(a closed loop: a stream's next request leaves when its last answer ends), every prompt fresh
(its own seed, so the prompt cache skips nothing), sized in the model's tokens by a first request,
not counted, that also absorbs any model load. The figures (load_stats.py): aggregate tokens/s,
per-request TTFT and decode rate at p50/p95, and every failure with its reason.

--api ollama speaks Ollama's native /api/generate; --api openai the OpenAI-compatible
/v1/chat/completions (Ollama's /v1, llama-server, LiteLLM's proxy), streaming with usage. An API
key (the gateway's, the router's) is read from the environment variable --api-key-env names, never
from the command line, and is sent as `Authorization: Bearer KEY`; --ca-cert trusts the gateway's
exported CA root.

Without --concurrency, scripts/bench is the single-stream prefill/decode bench (bench.py), unchanged:
it measures prompt sizes against the client timeout, a different question from this one.
"""

import argparse
import concurrent.futures
import itertools
import os
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Optional

import httpx

from ollama_gpu import generation_stats
from ollama_gpu.errors import UserError
from ollama_gpu.generation_stats import format_number
from ollama_gpu.load_protocols import APIS, StreamingApi
from ollama_gpu.load_stats import LevelSummary, RequestOutcome, failed, outcome_from_chunks, summarize
from ollama_gpu.smoke import ModelMissing, ServerUnreachable, Target

DEFAULT_API_KEY_ENV = "OLLAMA_GPU_API_KEY"
DEFAULT_REQUESTS_PER_STREAM = 3
DEFAULT_PROMPT_TOKENS = 512
# RFC 6750 b64token: what may follow "Bearer " in an Authorization header, and nothing that could
# end the header or start another.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*", re.ASCII)
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
REASON_LENGTH = 120


@dataclass(frozen=True)
class LoadSpec:
    api: StreamingApi
    concurrency: list[int]
    requests_per_stream: int
    prompt_tokens: int
    num_predict: int


@dataclass(frozen=True)
class Credentials:
    """The key and the name of the variable it came from (named in errors; the key never is)."""

    env_name: str
    api_key: Optional[str]

    def redact(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text


def read_api_key(env_name: str, required: bool, environ: Optional[dict[str, str]] = None) -> Credentials:
    """The key from ENV_NAME; an unset default variable means no key, an unset named one is an error."""
    if not ENV_NAME.fullmatch(env_name):
        raise UserError(f"--api-key-env {env_name!r} is not an environment variable name")
    key = (os.environ if environ is None else environ).get(env_name)
    if not key:
        if required:
            raise UserError(f"--api-key-env names {env_name}, which is not set: export {env_name}=<your API key>")
        return Credentials(env_name, None)
    if not BEARER_TOKEN.fullmatch(key):
        raise UserError(f"the API key in {env_name} is not a bearer token (letters, digits and -._~+/ only, '=' at the end)")
    return Credentials(env_name, key)


def base_url(url: str, api: StreamingApi) -> str:
    """The server's root: an OpenAI base URL usually ends in /v1, which the API's paths carry."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UserError(f"--url {url!r} is not an http:// or https:// URL")
    root = url.rstrip("/")
    return root[: -len("/v1")] if api.name == "openai" and root.endswith("/v1") else root


def http_client(url: str, credentials: Credentials, timeout_s: float, ca_cert: Optional[str]) -> httpx.Client:
    verify: Any = True
    if ca_cert:
        try:
            verify = ssl.create_default_context(cafile=ca_cert)
        except (OSError, ssl.SSLError) as error:
            raise UserError(f"--ca-cert {ca_cert}: cannot read a CA certificate from it ({error})") from None
    headers = {"Authorization": f"Bearer {credentials.api_key}"} if credentials.api_key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=timeout_s, verify=verify)


def _reason(response: httpx.Response, credentials: Credentials) -> str:
    """HTTP status and the server's own words, short enough to count alike failures together."""
    try:
        body = response.json()
        detail = body.get("error") if isinstance(body, dict) else None
        if isinstance(detail, dict):
            detail = detail.get("message")
    except ValueError:
        detail = response.text
    text = f"HTTP {response.status_code}" + (f": {str(detail).strip()}" if detail else "")
    return credentials.redact(text)[:REASON_LENGTH]


def preflight(http: httpx.Client, api: StreamingApi, target: Target, credentials: Credentials) -> None:
    """One line for what makes every request fail: nothing answers, the key is refused, no such model."""
    try:
        response = http.get(api.models_path)
    except httpx.TimeoutException:
        raise ServerUnreachable(f"{target.url} did not answer within {target.timeout_s:g} s") from None
    except httpx.TransportError as error:
        if "CERTIFICATE_VERIFY_FAILED" in str(error):
            raise UserError(
                f"{target.url}'s certificate is not trusted: pass --ca-cert with its CA root "
                "(for the gateway: pulumi stack output gateway_ca_root > ollama-gpu-ca.crt)"
            ) from None
        raise ServerUnreachable(f"nothing answers at {target.url} ({type(error).__name__}). {target.unreachable_hint}") from None
    if response.status_code in (401, 403):
        given = f"the key in {credentials.env_name}" if credentials.api_key else f"no key ({credentials.env_name} is not set)"
        raise UserError(f"{target.url} refused {given} (HTTP {response.status_code}): export {credentials.env_name}=<a valid API key>")
    if response.status_code != 200:
        raise ServerUnreachable(
            f"{target.url} answers, but not as the {api.name} API (HTTP {response.status_code} for {api.models_path}); "
            f"{'try --api openai' if api.name == 'ollama' else 'try --api ollama'}"
        )
    try:
        models = response.json()
    except ValueError:
        raise ServerUnreachable(f"{target.url}{api.models_path} did not answer JSON: not the {api.name} API") from None
    if not (api.lists_model(models, target.model) or api.lists_model(models, f"{target.model}:latest")):
        raise ModelMissing(f"model '{target.model}' is not listed at {target.url}{api.models_path}")


def one_request(http: httpx.Client, api: StreamingApi, model: str, prompt: str, num_predict: int, stream: int,
                clock: Callable[[], float], credentials: Credentials) -> RequestOutcome:
    started = clock()
    timed = []
    try:
        with http.stream("POST", api.generate_path, json=api.request_body(model, prompt, num_predict)) as response:
            if response.status_code != 200:
                response.read()
                return failed(stream, started, clock(), _reason(response, credentials))
            for line in response.iter_lines():
                chunk = api.parse_line(line)
                if chunk is not None:
                    timed.append((clock(), chunk))
    except httpx.TimeoutException:
        return failed(stream, started, clock(), "timed out (--timeout)")
    except httpx.TransportError as error:
        return failed(stream, started, clock(), f"connection failed: {type(error).__name__}")
    outcome = outcome_from_chunks(stream, started, timed, clock())
    return outcome if outcome.error is None else failed(stream, started, outcome.finished_s, credentials.redact(outcome.error)[:REASON_LENGTH])


class Progress:
    """The bench's progress bar (bench.ProgressBar), advanced from the streams' threads."""

    def __init__(self, bar: Any):
        self.bar, self.lock = bar, threading.Lock()

    def show(self, label: str) -> None:
        with self.lock:
            self.bar.show(label)

    def finished_one(self, label: Callable[[], str]) -> None:
        with self.lock:
            self.bar.advance()
            self.bar.show(label())


@dataclass
class LoadRun:
    """`prompt(words, seed)` writes a prompt; the warm-up measures the model's tokens per word, as
    the server counts them, and sizes every later prompt to --prompt-tokens."""

    http: httpx.Client
    spec: LoadSpec
    target: Target
    credentials: Credentials
    prompt: Callable[[int, int], str]
    words: int

    def __post_init__(self) -> None:
        self.seeds = itertools.count(1)
        self.seed_lock = threading.Lock()

    def next_prompt(self) -> str:
        with self.seed_lock:
            seed = next(self.seeds)
        return self.prompt(self.words, seed)

    def request(self, stream: int, clock: Callable[[], float]) -> RequestOutcome:
        return one_request(self.http, self.spec.api, self.target.model, self.next_prompt(), self.spec.num_predict,
                           stream, clock, self.credentials)  # fmt: skip

    def warm_up(self) -> None:
        outcome = self.request(0, time.monotonic)
        if outcome.error is not None:
            raise UserError(f"the warm-up request to {self.target.url} failed: {outcome.error}")
        if outcome.prompt_tokens:
            self.words = max(1, round(self.words * self.spec.prompt_tokens / outcome.prompt_tokens))

    def level(self, concurrency: int, progress: Progress) -> tuple[LevelSummary, list[RequestOutcome]]:
        outcomes: list[RequestOutcome] = []
        origin = time.monotonic()

        def clock() -> float:
            return time.monotonic() - origin

        def label() -> str:
            failures = sum(1 for outcome in outcomes if outcome.error is not None)
            total = concurrency * self.spec.requests_per_stream
            return f"concurrency {concurrency}: {len(outcomes)}/{total} requests, {failures} failed"

        stopping = threading.Event()

        def stream(index: int) -> None:
            for _ in range(self.spec.requests_per_stream):
                if stopping.is_set():
                    return
                outcome = self.request(index, clock)
                outcomes.append(outcome)  # list.append is atomic; the label reads a snapshot
                progress.finished_one(label)

        progress.show(label())
        with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
            try:
                for running in [pool.submit(stream, index) for index in range(1, concurrency + 1)]:
                    running.result()
            except KeyboardInterrupt:
                # Ctrl-C: no stream sends another request; the pool waits for the answers in flight.
                stopping.set()
                raise
        outcomes.sort(key=lambda outcome: (outcome.started_s, outcome.stream))
        return summarize(concurrency, outcomes), outcomes


def run_load(target: Target, spec: LoadSpec, credentials: Credentials, ca_cert: Optional[str],
             prompt: Callable[[int, int], str], words_guess: int, progress_bar: Callable[[int], Any]) -> dict[str, Any]:
    url = base_url(target.url, spec.api)
    target = Target(url, target.model, target.timeout_s, target.settings, target.unreachable_hint)
    with http_client(url, credentials, target.timeout_s, ca_cert) as http:
        preflight(http, spec.api, target, credentials)
        run = LoadRun(http, spec, target, credentials, prompt, words_guess)
        bar = progress_bar(1 + sum(spec.concurrency) * spec.requests_per_stream)
        progress = Progress(bar)
        levels = []
        try:
            progress.show("warm-up request (absorbs any model load)")
            run.warm_up()
            bar.advance()
            for concurrency in spec.concurrency:
                summary, outcomes = run.level(concurrency, progress)
                levels.append({**summary.to_dict(), "outcomes": [asdict(outcome) for outcome in outcomes]})
        finally:
            bar.close()
    return {
        "url": url,
        "api": spec.api.name,
        "model": target.model,
        "prompt_tokens_target": spec.prompt_tokens,
        "prompt_words": run.words,
        "num_predict": spec.num_predict,
        "requests_per_stream": spec.requests_per_stream,
        "levels": levels,
    }


def format_load_table(report: dict[str, Any]) -> str:
    headers = ["concurrency", "requests", "failed", "prompt tokens", "aggregate tok/s", "TTFT p50 s", "TTFT p95 s",
               "decode p50 tok/s", "decode p95 tok/s", "notes"]  # fmt: skip
    rows = []
    for level in report["levels"]:
        notes = [f"{count}x {reason}" for reason, count in level["failures"].items()] + level["notes"]
        rows.append([
            str(level["concurrency"]), str(level["requests"]), str(level["failed"]),
            format_number(level["prompt_tokens_p50"]), format_number(level["aggregate_tokens_per_s"]), format_number(level["ttft_p50_s"]),
            format_number(level["ttft_p95_s"]), format_number(level["decode_p50_tokens_per_s"]),
            format_number(level["decode_p95_tokens_per_s"]), "; ".join(notes),
        ])  # fmt: skip
    title = (
        f"{report['api']} API at {report['url']}, model {report['model']}: {report['requests_per_stream']} requests per stream, "
        f"prompts of {report['prompt_tokens_target']} tokens asked, num_predict {report['num_predict']}; "
        "p50/p95 per request, p95 the slow tail (decode: the rate 95% of requests beat)"
    )
    return f"{title}\n{generation_stats.render_table(headers, rows)}"


def _concurrency(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of stream counts") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be positive stream counts")
    return levels


def add_load_arguments(parser: argparse.ArgumentParser, positive: Callable[[str], int]) -> None:
    group = parser.add_argument_group("load (--concurrency)")
    group.add_argument("--concurrency", type=_concurrency, help="run the load benchmark at these stream counts, e.g. 1,2,4,8")
    group.add_argument("--api", choices=sorted(APIS), default="ollama", help="ollama: native /api/generate; openai: /v1/chat/completions (default ollama)")
    group.add_argument("--requests-per-stream", type=positive, default=DEFAULT_REQUESTS_PER_STREAM,
                       help=f"requests each stream sends one after another (default {DEFAULT_REQUESTS_PER_STREAM})")
    group.add_argument("--prompt-tokens", type=positive, default=DEFAULT_PROMPT_TOKENS, help=f"approximate prompt size (default {DEFAULT_PROMPT_TOKENS})")
    group.add_argument("--api-key-env", help=f"environment variable holding the API key (default {DEFAULT_API_KEY_ENV}, if set)")
    group.add_argument("--ca-cert", help="CA certificate to trust for https (the gateway's exported root)")
