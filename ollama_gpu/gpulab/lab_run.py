"""What both lab sweeps share: a server process with a log, and the deadline-bound loops over
points and prompt sizes (a run cut short still leaves its data, written after every point)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

def add_sweep_arguments(parser: argparse.ArgumentParser, models: Sequence[str], points: Callable[[str], Any],
                        default_points: str, default_sizes: str) -> None:
    """The options both sweeps take: the model, where things go, the points and prompt sizes."""
    parser.add_argument("--model", required=True, choices=sorted(models))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--models-dir", type=Path, default=Path("/tmp/gpu-lab-models"))
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp/gpu-lab-logs"))
    parser.add_argument("--points", type=points, default=points(default_points))
    parser.add_argument("--sizes", type=lambda text: [int(x) for x in text.split(",")],
                        default=[int(x) for x in default_sizes.split(",")])
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--num-ctx", type=int, default=32768)
    parser.add_argument("--kv-cache-type", default="f16")
    parser.add_argument("--deadline", type=float, help="epoch seconds by which to stop measuring")
    parser.add_argument("--host-info", type=Path, help="hostinfo JSON to embed (default: collect now)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scale-blocks", type=int, default=0, help="tests: keep only this many blocks")
    parser.add_argument("--scale-vocab", type=int, default=4096, help="tests: vocabulary when scaled down")


# Errors a server that is still starting (or loading) answers with.
NOT_READY = (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError)


class ServerProcess:
    """A server started with ``command`` in its own process group, its output in ``log_path``,
    ready once ``ready(server)`` is true."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path, port: int,
                 ready: Callable[[ServerProcess], bool], timeout: float) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(command, env={**os.environ, **env}, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while True:
            try:
                if ready(self):
                    return
            except NOT_READY:
                pass
            if self.process.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError(f"{Path(command[0]).name} did not get ready; see {log_path}")
            time.sleep(0.2)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 600) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def stop(self) -> str:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if not self._log.closed:
            self._log.close()
        return self.log_path.read_text(errors="replace")


def measure_sizes(record: dict[str, Any], sizes: Sequence[int], deadline: float, share: float,
                  measure: Callable[[int, int], dict[str, Any]]) -> None:
    """``measure(size, index)`` for each prompt size into ``record["requests"]`` while time allows:
    the first size until ``deadline`` (every point gets one figure), later ones until ``share``,
    each estimated from the last prefill rate (prefill slows as the context grows)."""
    seconds_per_token = None
    for index, size in enumerate(sizes, start=1):
        estimate = 10 + (size * seconds_per_token * 1.5 if seconds_per_token else 0)
        if time.time() + estimate > (share if index > 1 else deadline):
            record.setdefault("skipped_sizes", []).append(size)
            continue
        result = measure(size, index)
        record["requests"].append(result)
        if result["prefill_tokens_per_s"]:
            seconds_per_token = 1 / result["prefill_tokens_per_s"]


class Labelled(Protocol):
    label: str


def sweep_points(points: Sequence[Labelled], deadline: float, results: dict[str, Any], out: Path,
                 run: Callable[[Any, float, int], dict[str, Any]], describe: Callable[[Any, dict[str, Any]], str],
                 gguf: Path, keep_gguf: bool) -> None:
    """``run(point, share, index)`` for each point that can still start, each with an equal part
    of the time left; the results file is rewritten after every point. The model's GGUF is removed
    at the end unless a later sweep needs it (disk on the GPU machine holds about two models)."""
    try:
        for index, point in enumerate(points):
            now = time.time()
            if now + 45 > deadline:
                results.setdefault("skipped_points", []).append(point.label)
                continue
            share = now + (deadline - now) / (len(points) - index)
            outcome = run(point, share, index)
            results["runs"].append(outcome)
            out.write_text(json.dumps(results, indent=1))
            summary = [(r["prompt_tokens"], r["prefill_tokens_per_s"], r["decode_tokens_per_s"])
                       for r in outcome["requests"]]
            print(f"{describe(point, outcome)} {summary} {outcome.get('error', '')}", flush=True)
    finally:
        if not keep_gguf:
            gguf.unlink(missing_ok=True)
        out.write_text(json.dumps(results, indent=1))
