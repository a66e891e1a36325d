"""One lab model through a sweep of emulated GPU sizes: placement, prefill and decode per point.

    python3 -m ollama_gpu.gpulab.sweep --ollama BIN --model KEY --out RESULTS.json [options]

For each point the server is started afresh with ``OLLAMA_GPU_OVERHEAD`` chosen so that the VRAM it
may use for layers is what the target card would leave (a smaller card is emulated by holding the
rest back), the model is loaded with the recipe's options, and prompts of several sizes are sent,
each followed by a short decode: prefill tokens/s at each size and decode tokens/s at that context
fill. The server's placement lines, its exact per-layer memory report, ``/api/ps`` and the timings
go into the results file after every point, so a run cut short still leaves its data.

The GGUF is written straight into the server's blob store under a name derived from the model key:
Ollama neither hashes a blob it creates a model from (server/create.go ggufLayers) nor when it loads
it, and hashing 30 GB would cost a minute of GPU-machine time per model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollama_gpu.gpulab import hostinfo
from ollama_gpu.gpulab.gguf_writer import write_gguf
from ollama_gpu.gpulab.lab_run import ServerProcess, add_sweep_arguments, measure_sizes, sweep_points
from ollama_gpu.gpulab.models import MODELS, prompt_text, scaled_down

GIB = 1 << 30
# The recipe's OLLAMA_GPU_OVERHEAD (field-notes.md): part of every emulated card's budget.
RECIPE_OVERHEAD = GIB
# Targets as the server would see each card's free VRAM (field-notes.md "The hosts").
NAMED_TARGETS = {"a10": 22.5, "v100": 31.5}
PORT = 11534
LOG_PATTERN = re.compile(
    r'msg="(model weights|kv cache|compute graph|total memory|inference compute|available gpu|'
    r"offloaded|load_backend|starting runner|system memory|gpu memory|enabling flash attention|"
    r'new layout created|exploring intermediate layers|verifying layout|model layout did not fit)'
    r'|offloaded \d+/\d+ layers|msg=memory |load_backend|msg="?server config'
)


@dataclass(frozen=True)
class Point:
    """A free VRAM to emulate (``target_gib``; None: the whole GPU, no overhead), and a num_batch and
    KV cache type that override the sweep's when set."""

    label: str
    target_gib: float | None
    num_batch: int | None = None
    kv_cache_type: str | None = None


def card_target(text: str) -> tuple[str, float | None]:
    """A point's card: a10 or v100 (their free VRAM), full (the whole GPU, None) or GiB to emulate;
    with the label the results file gives it."""
    if text == "full":
        return text, None
    if text in NAMED_TARGETS:
        return text, NAMED_TARGETS[text]
    gib = float(text)
    return f"{gib:g}GiB", gib


def parse_points(text: str) -> list[Point]:
    """"a10,v100,full,14,a10/b2048,a10/kq8_0": named cards, the whole GPU, GiB to emulate, then
    "/bN" for num_batch N and "/kTYPE" for the KV cache type."""
    points = []
    for item in text.split(","):
        target, *overrides = item.strip().split("/")
        num_batch = next((int(o[1:]) for o in overrides if o.startswith("b")), None)
        kv_cache_type = next((o[1:] for o in overrides if o.startswith("k")), None)
        target, gib = card_target(target)
        label = "/".join([target, *overrides])
        points.append(Point(label, gib, num_batch, kv_cache_type))
    return points


def emulated_overhead(free: int, target_gib: float | None) -> int:
    """OLLAMA_GPU_OVERHEAD that leaves the server what a card with ``target_gib`` free would leave
    after the recipe's own 1 GiB: free - overhead = target - 1 GiB. None: the whole GPU, no overhead."""
    if target_gib is None:
        return 0
    return max(0, free - round(target_gib * GIB) + RECIPE_OVERHEAD)


def ollama_server(binary: str, env: dict[str, str], log_path: Path) -> ServerProcess:
    """``ollama serve`` with a given environment, ready once it answers /api/version."""
    return ServerProcess([binary, "serve"], env | {"OLLAMA_HOST": f"127.0.0.1:{PORT}"}, log_path, PORT,
                         ready=lambda server: server.request("GET", "/api/version", timeout=2) is not None,
                         timeout=60)


def _request_record(response: dict[str, Any], requested: int) -> dict[str, Any]:
    prompt_ns, eval_ns = response.get("prompt_eval_duration", 0), response.get("eval_duration", 0)
    prompt_tokens, eval_count = response.get("prompt_eval_count", 0), response.get("eval_count", 0)
    return {
        "requested_prompt_tokens": requested,
        "prompt_tokens": prompt_tokens,
        "prompt_eval_duration_ns": prompt_ns,
        "prefill_tokens_per_s": round(prompt_tokens / (prompt_ns / 1e9), 2) if prompt_ns else None,
        "eval_count": eval_count,
        "eval_duration_ns": eval_ns,
        "decode_tokens_per_s": round(eval_count / (eval_ns / 1e9), 2) if eval_ns else None,
        "context_fill": prompt_tokens,
        "total_duration_ns": response.get("total_duration"),
        "done_reason": response.get("done_reason"),
    }


def run_point(
    args: argparse.Namespace, point: Point, model_name: str, deadline: float, share: float, seed: int
) -> dict[str, Any]:
    """``deadline``: when every request must be over; ``share``: when to stop starting new sizes."""
    gpu = hostinfo.gpu_free_bytes()
    env = {
        "OLLAMA_MODELS": str(args.models_dir),
        "OLLAMA_DEBUG": "1",
        "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_KV_CACHE_TYPE": point.kv_cache_type or args.kv_cache_type,
        "OLLAMA_KEEP_ALIVE": "-1",
        "OLLAMA_NUM_PARALLEL": "1",
        "OLLAMA_MAX_LOADED_MODELS": "1",
        "OLLAMA_LOAD_TIMEOUT": "10m",
    }
    overhead = emulated_overhead(gpu[0], point.target_gib) if gpu is not None else 0
    env["OLLAMA_GPU_OVERHEAD"] = str(overhead)
    record: dict[str, Any] = {
        "point": point.label,
        "target_free_vram": None if point.target_gib is None else round(point.target_gib * GIB),
        "gpu_free_before": gpu[0] if gpu else None,
        "gpu_total": gpu[1] if gpu else None,
        "env": env | {"OLLAMA_MODELS": "<lab models dir>"},
        # A build beside a point (run.sh overlaps the first sweeps with one) shows here.
        "host_load_before": round(os.getloadavg()[0], 2),
        "requests": [],
    }
    options = {"num_ctx": args.num_ctx, "num_batch": point.num_batch or args.num_batch, "use_mmap": False}
    record["options"] = options
    log_path = args.log_dir / f"{args.model}-{point.label.replace('/', '-')}.log"
    server = ollama_server(args.ollama, env, log_path)
    try:
        started = time.time()
        loaded = server.request("POST", "/api/generate",
                                {"model": model_name, "prompt": "", "keep_alive": -1, "options": options},
                                timeout=max(60, deadline - time.time()))
        record["load_seconds"] = round(time.time() - started, 2)
        record["load_duration_ns"] = loaded.get("load_duration")
        record["ps"] = server.request("GET", "/api/ps")
        record["gpu_free_after_load"] = (hostinfo.gpu_free_bytes() or (None,))[0]
        sampling = {"temperature": 1.0, "top_k": 40}

        def generate(tokens: int, predict: int, index: int) -> dict[str, Any]:
            body = {
                "model": model_name, "prompt": prompt_text(tokens, seed * 1000 + index), "raw": True,
                "stream": False, "keep_alive": -1,
                "options": {**options, **sampling, "num_predict": predict, "seed": seed * 1000 + index},
            }
            return _request_record(server.request("POST", "/api/generate", body,
                                                  timeout=max(30, deadline - time.time())), tokens)

        record["warmup"] = generate(64, 4, 0)
        measure_sizes(record, args.sizes, deadline, share, lambda size, index: generate(size, args.decode_tokens, index))
    except Exception as error:  # the record keeps what was measured before the failure
        record["error"] = f"{type(error).__name__}: {error}"
    finally:
        log_text = server.stop()
    record["log_lines"] = [line for line in log_text.splitlines() if LOG_PATTERN.search(line)][:400]
    return record


def write_model(args: argparse.Namespace, key: str) -> tuple[str, Path, dict[str, Any]]:
    model = MODELS[key]
    if args.scale_blocks:
        model = scaled_down(model, args.scale_blocks, args.scale_vocab)
    digest = hashlib.sha256(f"gpu-lab {key} {args.scale_blocks} {args.scale_vocab}".encode()).hexdigest()
    blobs = args.models_dir / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    path = blobs / f"sha256-{digest}"
    info: dict[str, Any] = {"block_count": model.shape.block_count, "vocab_size": model.shape.vocab_size}
    if path.exists():  # written ahead (--gguf-only, while the CUDA backend was building)
        return digest, path, info | {"file_size": path.stat().st_size, "written_ahead": True}
    partial = path.with_suffix(".partial")
    started = time.time()
    size = write_gguf(partial, model.metadata(), model.tensors(), seed=args.seed)
    os.sync()
    partial.rename(path)
    return digest, path, info | {"file_size": size, "write_seconds": round(time.time() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ollama_gpu.gpulab.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--ollama", required=True, help="the ollama binary (with its lib/ollama beside)")
    add_sweep_arguments(parser, MODELS, parse_points, "a10,v100,full", "512,2048,8192")
    parser.add_argument("--num-batch", type=int, default=512)
    parser.add_argument("--gguf-only", action="store_true", help="only write the model's GGUF into the store")
    parser.add_argument("--keep-gguf", action="store_true", help="leave the GGUF for a later sweep (llama-server's)")
    args = parser.parse_args(argv)
    deadline = args.deadline or time.time() + 3600
    args.log_dir.mkdir(parents=True, exist_ok=True)
    if args.gguf_only:
        print(write_model(args, args.model)[2])
        return 0

    host = json.loads(args.host_info.read_text()) if args.host_info else hostinfo.collect()
    version = subprocess.run([args.ollama, "--version"], capture_output=True, text=True,
                             env={**os.environ, "OLLAMA_HOST": "127.0.0.1:9"}).stdout.strip()
    digest, blob, gguf = write_model(args, args.model)
    model_name = f"lab-{args.model}".lower()
    results: dict[str, Any] = {
        "lab_format": 1, "model": args.model, "ollama_version": version, "host": host, "gguf": gguf,
        "settings": {"num_ctx": args.num_ctx, "num_batch": args.num_batch, "kv_cache_type": args.kv_cache_type,
                     "flash_attention": True, "num_parallel": 1, "decode_tokens": args.decode_tokens,
                     "recipe_overhead": RECIPE_OVERHEAD, "scale_blocks": args.scale_blocks},
        "runs": [],
    }
    creator = ollama_server(args.ollama, {"OLLAMA_MODELS": str(args.models_dir)}, args.log_dir / f"{args.model}-create.log")
    try:
        creator.request("POST", "/api/create", {"model": model_name, "files": {"model.gguf": f"sha256:{digest}"},
                                                 "stream": False})
    finally:
        creator.stop()

    def describe(point: Point, run: dict[str, Any]) -> str:
        offloaded = next((line for line in reversed(run["log_lines"]) if "offloaded" in line), "")
        return f"{args.model} {point.label}: {re.sub('.*msg=', '', offloaded)}"

    sweep_points(args.points, deadline, results, args.out, describe=describe, gguf=blob, keep_gguf=args.keep_gguf,
                 run=lambda point, share, index: run_point(args, point, model_name, deadline, share,
                                                           seed=args.seed * 100 + index))
    return 0


if __name__ == "__main__":
    sys.exit(main())
