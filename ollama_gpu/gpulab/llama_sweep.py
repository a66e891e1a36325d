"""One lab model through llama-server at emulated card sizes: placement, prefill and decode per point.

    python3 -m ollama_gpu.gpulab.llama_sweep --llama-server BIN --model KEY --out RESULTS.json [options]

The counterpart of ``ollama_gpu.gpulab.sweep`` for llama.cpp's own server, on the same GGUF (the
file that sweep writes; ``--keep-gguf`` there leaves it for this one, and this one's for that).
A point names a card and a placement: ``a10/fit`` lets ``--fit`` size the model to the free VRAM
less the margin (the stack's GPU overhead), ``a10/n20`` keeps the expert tensors of the first 20
layers in host RAM (``-ngl 999 --n-cpu-moe 20 --fit off``); ``/mmap`` keeps llama.cpp's default
memory-mapped weights instead of ``--load-mode none`` (this build's spelling of --no-mmap); ``/ub2048`` sets the physical batch (``-ub``, and
``-b`` to match) instead of the default 512: with experts in host RAM every physical batch of a
prompt copies them to the GPU once. The card's free VRAM is emulated by holding the
rest of the GPU (``ollama_gpu.gpulab.vram_hold``): llama-server has no overhead setting, and its
fitting reads the driver's free figure, as it would on the card.

Prompts are token ids (``/completion`` accepts them), so each size is exact whatever the
tokenizer; each is followed by a short decode. The server's buffer-size lines, its fitting trace
(``-lv 4``), the GPU memory the process holds and the timings go into the results file after every
point.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ollama_gpu.gpulab import hostinfo
from ollama_gpu.gpulab.lab_run import ServerProcess, add_sweep_arguments, measure_sizes, sweep_points
from ollama_gpu.gpulab.models import MODELS
from ollama_gpu.gpulab.sweep import GIB, RECIPE_OVERHEAD, card_target, write_model

PORT = 11535
LOG_PATTERN = re.compile(
    r"buffer size|offload|fit|load_tensors|llama_context|llama_kv_cache|system_info|ggml_cuda_init|"
    r"Device \d|n_ctx|n_batch|n_ubatch|flash_attn|build:|overrid|CUDA0|model loaded|error|failed"
)


@dataclass(frozen=True)
class LlamaPoint:
    """A free VRAM to emulate (None: the whole GPU), and a placement: ``n_cpu_moe`` None is ``--fit``."""

    label: str
    target_gib: float | None
    n_cpu_moe: int | None
    mmap: bool = False
    ubatch: int | None = None


def parse_points(text: str) -> list[LlamaPoint]:
    """"a10/fit,a10/n20,v100/fit/mmap,14/n30/ub2048,full/fit"."""
    points = []
    for item in text.split(","):
        target, placement, *flags = item.strip().split("/")
        target, gib = card_target(target)
        if placement == "fit":
            n_cpu_moe = None
        elif re.fullmatch(r"n\d+", placement):
            n_cpu_moe = int(placement[1:])
        else:
            raise ValueError(f"placement {placement!r}: fit or nN")
        ubatch = next((int(flag[2:]) for flag in flags if re.fullmatch(r"ub\d+", flag)), None)
        if any(flag != "mmap" and not re.fullmatch(r"ub\d+", flag) for flag in flags):
            raise ValueError(f"unknown flags in {item!r}")
        points.append(LlamaPoint("/".join([target, placement, *flags]), gib, n_cpu_moe, "mmap" in flags, ubatch))
    return points


def server_arguments(args: argparse.Namespace, point: LlamaPoint, gguf: Path) -> list[str]:
    """The command line, as the deployed container would get it, plus the lab's port and trace."""
    command = [
        str(args.llama_server), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(PORT),
        "-c", str(args.num_ctx), "-np", "1", "-fa", "on", "-ctk", args.kv_cache_type, "-ctv", args.kv_cache_type,
        "--alias", "lab", "-lv", "4",
    ]
    if not point.mmap:
        command += ["--load-mode", "none"]
    if point.ubatch:
        command += ["-ub", str(point.ubatch), "-b", str(max(point.ubatch, 2048))]
    if point.n_cpu_moe is None:
        command += ["--fit", "on", "--fit-target", str(args.margin_mib)]
    else:
        command += ["-ngl", "999", "--n-cpu-moe", str(point.n_cpu_moe), "--fit", "off"]
    return command


def llama_server(command: list[str], log_path: Path, timeout: float) -> ServerProcess:
    """llama-server, ready once /health says the model is loaded (it answers 503 while loading)."""
    return ServerProcess(command, {}, log_path, PORT, timeout=timeout,
                         ready=lambda server: server.request("GET", "/health", timeout=2).get("status") == "ok")


def gpu_memory_used(process: subprocess.Popen[bytes]) -> int | None:
    """What the process holds on the GPU (nvidia-smi's per-process figure), in bytes."""
    used = [int(row["used_memory"]) << 20 for row in hostinfo.gpu_apps() if row.get("pid") == str(process.pid)]
    return sum(used) if used else None


class VramHold:
    """The rest of the GPU taken by ``vram_hold`` for as long as the point runs."""

    def __init__(self, target_free: int) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "ollama_gpu.gpulab.vram_hold", str(target_free)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""
        match = re.fullmatch(r"held (\d+) free (\d+)\n?", line)
        if not match:
            self.release()
            raise RuntimeError(f"vram_hold failed: {line!r}")
        self.held, self.free = int(match.group(1)), int(match.group(2))

    def release(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def request_record(response: dict[str, Any], requested: int) -> dict[str, Any]:
    """The figures of one /completion, under the names the Ollama sweep records them."""
    timings = response.get("timings", {})
    prompt_ms, predicted_ms = timings.get("prompt_ms", 0), timings.get("predicted_ms", 0)
    prompt_n, predicted_n = timings.get("prompt_n", 0), timings.get("predicted_n", 0)
    return {
        "requested_prompt_tokens": requested,
        "prompt_tokens": prompt_n,
        "prompt_eval_duration_ns": round(prompt_ms * 1e6),
        "prefill_tokens_per_s": round(prompt_n / (prompt_ms / 1e3), 2) if prompt_ms else None,
        "eval_count": predicted_n,
        "eval_duration_ns": round(predicted_ms * 1e6),
        "decode_tokens_per_s": round(predicted_n / (predicted_ms / 1e3), 2) if predicted_ms else None,
        "context_fill": prompt_n,
        "stop_type": response.get("stop_type"),
    }


def run_point(args: argparse.Namespace, point: LlamaPoint, gguf: Path, vocab: int, deadline: float,
              share: float, seed: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "point": point.label,
        "target_free_vram": None if point.target_gib is None else round(point.target_gib * GIB),
        "n_cpu_moe": point.n_cpu_moe, "mmap": point.mmap, "ubatch": point.ubatch, "requests": [],
        # A build beside a point (run.sh overlaps the first sweeps with one) shows here.
        "host_load_before": round(os.getloadavg()[0], 2),
    }
    hold = None
    log_path = args.log_dir / f"{args.model}-llama-{point.label.replace('/', '-')}.log"
    server = None
    try:
        if point.target_gib is not None and hostinfo.gpu_free_bytes() is not None:
            hold = VramHold(round(point.target_gib * GIB))
            record["vram_held"] = hold.held
        gpu = hostinfo.gpu_free_bytes()
        record["gpu_free_before"], record["gpu_total"] = (gpu or (None, None))
        command = server_arguments(args, point, gguf)
        record["arguments"] = [("<gguf>" if part == str(gguf) else part) for part in command[1:]]
        started = time.time()
        server = llama_server(command, log_path, timeout=max(60, deadline - time.time()))
        record["load_seconds"] = round(time.time() - started, 2)
        record["gpu_free_after_load"] = (hostinfo.gpu_free_bytes() or (None,))[0]
        record["gpu_memory_used"] = gpu_memory_used(server.process)
        rng = random.Random(seed)

        def complete(tokens: int, predict: int) -> dict[str, Any]:
            body = {"prompt": [rng.randrange(256, vocab - 1) for _ in range(tokens)], "n_predict": predict,
                    "cache_prompt": False, "ignore_eos": True, "temperature": 1.0, "top_k": 40,
                    "seed": rng.randrange(1 << 30)}
            return request_record(server.request("POST", "/completion", body,
                                                 timeout=max(30, deadline - time.time())), tokens)

        record["warmup"] = complete(64, 4)
        measure_sizes(record, args.sizes, deadline, share, lambda size, _: complete(size, args.decode_tokens))
    except Exception as error:  # the record keeps what was measured before the failure
        record["error"] = f"{type(error).__name__}: {error}"
    finally:
        log_text = server.stop() if server else (log_path.read_text(errors="replace") if log_path.exists() else "")
        if hold:
            hold.release()
    record["log_lines"] = [line for line in log_text.splitlines() if LOG_PATTERN.search(line)][:800]
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ollama_gpu.gpulab.llama_sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--llama-server", required=True, type=Path)
    add_sweep_arguments(parser, MODELS, parse_points, "a10/fit,v100/fit", "1024,4096,16384")
    parser.add_argument("--margin-mib", type=int, default=RECIPE_OVERHEAD >> 20,
                        help="--fit-target: the free VRAM --fit leaves (the stack's GPU overhead)")
    parser.add_argument("--keep-gguf", action="store_true", help="leave the GGUF for a later sweep (Ollama's)")
    args = parser.parse_args(argv)
    deadline = args.deadline or time.time() + 3600
    args.log_dir.mkdir(parents=True, exist_ok=True)

    host = json.loads(args.host_info.read_text()) if args.host_info else hostinfo.collect()
    version = subprocess.run([str(args.llama_server), "--version"], capture_output=True, text=True, check=False)
    _, gguf, info = write_model(args, args.model)
    results: dict[str, Any] = {
        "lab_format": 1, "engine": "llama-server", "model": args.model,
        "llama_server_version": (version.stdout + version.stderr).strip()[-400:], "host": host, "gguf": info,
        "settings": {"num_ctx": args.num_ctx, "kv_cache_type": args.kv_cache_type, "flash_attention": True,
                     "num_parallel": 1, "decode_tokens": args.decode_tokens, "margin_mib": args.margin_mib,
                     "scale_blocks": args.scale_blocks},
        "runs": [],
    }
    sweep_points(args.points, deadline, results, args.out, gguf=gguf, keep_gguf=args.keep_gguf,
                 run=lambda point, share, index: run_point(args, point, gguf, info["vocab_size"], deadline,
                                                           share, seed=args.seed * 100 + index),
                 describe=lambda point, run: f"llama-server {args.model} {point.label}: "
                                             f"used {run.get('gpu_memory_used')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
