"""Benchmark, not a test: `scripts/bench --concurrency 1,2,4,8` against the CPU stand-in Ollama.

    scripts/bench-load [--num-parallel 1,4] [--concurrency 1,2,4,8] [--requests-per-stream 3]
                       [--prompt-tokens 512] [--num-predict 64]

For each OLLAMA_NUM_PARALLEL it starts the pinned Ollama, built for the CPU, serving the tiny
random-weight qwen3moe test model (tests/integration/native_server.py), and runs the load as a user
runs it, through scripts/bench. The figures describe this machine's CPU and a 3 MB model: they show
how the server queues (1 slot) or batches (several) concurrent requests, not what a GPU host does.
The machine's load average, printed before and after each run, says how much else was running.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.integration.native_server import running_native_ollama

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-parallel", default="1,4", help="OLLAMA_NUM_PARALLEL values, one server each (default 1,4)")
    parser.add_argument("--concurrency", default="1,2,4,8")
    parser.add_argument("--requests-per-stream", default="3")
    parser.add_argument("--prompt-tokens", default="512")
    parser.add_argument("--num-predict", default="64")
    args = parser.parse_args(argv)
    print(f"CPU-only stand-in: Ollama on this machine's {os.cpu_count()} CPUs (shared), tiny test model", flush=True)
    for num_parallel in (int(part) for part in args.num_parallel.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-load-") as workdir, running_native_ollama(Path(workdir), num_parallel) as server:
            print(f"\nOLLAMA_NUM_PARALLEL={num_parallel}, load average before: {_load_average()}", flush=True)
            bench = subprocess.run(
                [REPO_ROOT / "scripts" / "bench", "--stack", "local", "--url", server.url, "--model", server.alias,
                 "--concurrency", args.concurrency, "--requests-per-stream", args.requests_per_stream,
                 "--prompt-tokens", args.prompt_tokens, "--num-predict", args.num_predict],
                check=False,
            )  # fmt: skip
            if bench.returncode:
                return bench.returncode
            print(f"load average after: {_load_average()}", flush=True)
    return 0


def _load_average() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
