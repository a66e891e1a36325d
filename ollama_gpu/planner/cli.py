"""``scripts/plan``: print where Ollama (or llama-server) will put a model before deploying it.

Profile values (--gpu) are the defaults; every explicit flag overrides its profile value. Bad input
prints one line on stderr and exits 2, so the command is safe to call from Make and CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ollama_gpu.planner.catalog import CATALOG, alternatives, catalog_geometry
from ollama_gpu.planner.geometry import ModelGeometry
from ollama_gpu.planner.registry import RegistryError, RegistryUnreachable, read_remote_model
from ollama_gpu.planner.hardware import PROFILES
from ollama_gpu.planner.llamacpp_placement import DEFAULT_FIT_TARGET
from ollama_gpu.planner.parallel import format_parallel_table, parallel_table
from ollama_gpu.planner.placement import KV_CACHE_TYPES
from ollama_gpu.planner.plan import ENGINES, PlanInputs, build_plan, format_plan_table
from ollama_gpu.planner.units import parse_rate, parse_size

# The project's recipe (field-notes.md, the Modelfile): 32K context, 20K tokens for the answer.
DEFAULT_NUM_CTX = 32768
DEFAULT_NUM_PREDICT = 20480


class UsageError(Exception):
    """Input the user can fix; reported as one line without a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit 2 itself
        raise UsageError(message)


def _typed(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """Turns ValueError from our parsers into argparse's "invalid value" message."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scripts/plan", description=__doc__.splitlines()[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--model",
        help="Ollama model name ([host/][namespace/]model[:tag]); its GGUF header is read from the registry "
        f"(cached per digest); with no registry reachable, a built-in model: {', '.join(CATALOG)}",
    )
    model.add_argument("--gguf", help="path of a GGUF file to read the geometry from")
    parser.add_argument("--gpu", choices=sorted(PROFILES), default="a10", help="hardware profile (default a10)")
    parser.add_argument("--registry", help="registry base URL to read --model from (a mirror), e.g. http://127.0.0.1:5000")
    parser.add_argument("--insecure", action="store_true", help="allow plain HTTP for the registry, as `ollama pull --insecure`")
    parser.add_argument("--gpu-free-vram", type=_typed(parse_size), help="free VRAM at load, e.g. 22.5GiB")
    parser.add_argument(
        "--gpus", type=_typed(_sizes), help="free VRAM of each GPU of a multi-GPU host in CUDA order, e.g. 22.5GiB,22.5GiB"
    )
    parser.add_argument("--num-gpu", type=int, default=-1, help="Modelfile num_gpu: layers forced onto GPUs (-1: automatic)")
    parser.add_argument("--gpu-bandwidth", type=_typed(parse_rate), help="GPU memory bandwidth, e.g. 600GB/s")
    parser.add_argument("--host-ram", type=_typed(parse_size), help="host RAM, e.g. 116GB")
    parser.add_argument("--host-ram-bandwidth", type=_typed(parse_rate), help="host RAM bandwidth, e.g. 100GB/s")
    parser.add_argument("--num-ctx", type=int, default=DEFAULT_NUM_CTX, help=f"default {DEFAULT_NUM_CTX}")
    parser.add_argument("--num-predict", type=int, default=DEFAULT_NUM_PREDICT, help=f"default {DEFAULT_NUM_PREDICT}")
    parser.add_argument("--num-batch", type=int, default=512, help="default 512")
    parser.add_argument("--kv-cache-type", choices=KV_CACHE_TYPES, default="f16")
    parser.add_argument("--flash-attention", choices=("on", "off"), default="on")
    parser.add_argument(
        "--op-offload", choices=("on", "off"), default="off",
        help="graph sizes of an engine that runs host blocks' prompt matmuls on the GPU (0.24.0 CUDA, measured); "
        "off reproduces the field-notes A10 log (default)",
    )
    parser.add_argument("--gpu-overhead", type=_typed(parse_size), default=0, help="OLLAMA_GPU_OVERHEAD, e.g. 1GiB")
    parser.add_argument("--num-parallel", type=int, default=1)
    parser.add_argument(
        "--parallel", type=_typed(_slot_counts),
        help="add a section for these numParallel slot counts, e.g. 1,2,4: what moves to the CPU, decode bounds per stream and in aggregate",
    )
    parser.add_argument("--prefill-rate", type=float, help="prompt tokens/s of the first prompt")
    parser.add_argument("--client-timeout", type=float, default=300.0, help="client timeout in s (default 300)")
    parser.add_argument("--context-fill", type=int, default=4096, help="tokens in context for the decode bound")
    parser.add_argument("--engine", choices=ENGINES, default="ollama", help="server that runs the model (default ollama)")
    parser.add_argument("--n-cpu-moe", type=int, help="llama-server: blocks whose routed experts stay in host RAM "
                        "(default: the smallest number that fits)")
    parser.add_argument("--margin", type=_typed(parse_size), default=DEFAULT_FIT_TARGET,
                        help="llama-server: VRAM left unused, as --fit-target (default 1GiB)")
    parser.add_argument("--load-mode", choices=("mmap", "none"), default="mmap",
                        help="llama-server: mmap keeps host weights in the mapped file (pageable), none in pinned memory")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    return parser


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(parse_size(part) for part in text.split(","))


def _slot_counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(","))
    if min(counts) < 1:
        raise ValueError(f"slot counts must be positive: {text!r}")
    return counts


def _model(args: argparse.Namespace) -> tuple[ModelGeometry, tuple[str, ...]]:
    """The registry's header first; the catalog only when no registry answers."""
    try:
        remote = read_remote_model(args.model, registry=args.registry, insecure=args.insecure)
    except RegistryUnreachable as error:
        if args.model in CATALOG:
            return catalog_geometry(args.model), (f"{error}; planned with the built-in geometry of {args.model}",)
        raise UsageError(f"{error}, and {args.model} is not built in: use --gguf FILE") from None
    except RegistryError as error:
        raise UsageError(str(error)) from None
    return remote.geometry, remote.notes


def _inputs(args: argparse.Namespace) -> PlanInputs:
    notes: tuple[str, ...] = ()
    if args.model:
        geometry, notes = _model(args)
        others = alternatives(args.model)
    else:
        from ollama_gpu.planner.gguf_geometry import geometry_from_gguf

        try:
            geometry = geometry_from_gguf(args.gguf)
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot read {args.gguf}: {error}") from None
        others = ()
    profile = PROFILES[args.gpu]
    overrides = {
        "gpu_free_vram": args.gpu_free_vram,
        "gpu_bandwidth": args.gpu_bandwidth,
        "host_ram": args.host_ram,
        "host_ram_bandwidth": args.host_ram_bandwidth,
        "prefill_tokens_per_s": args.prefill_rate,
    }
    explicit = {key: value for key, value in overrides.items() if value is not None}
    return PlanInputs.for_profile(
        profile,
        geometry,
        **explicit,
        num_ctx=args.num_ctx,
        num_predict=args.num_predict,
        num_batch=args.num_batch,
        kv_cache_type=args.kv_cache_type,
        flash_attention=args.flash_attention == "on",
        op_offload=args.op_offload == "on",
        gpu_overhead=args.gpu_overhead,
        num_parallel=args.num_parallel,
        client_timeout_s=args.client_timeout,
        context_fill=args.context_fill,
        alternatives=others,
        gpu_free_vrams=args.gpus or (),
        num_gpu=args.num_gpu,
        source_notes=notes,
        engine=args.engine,
        n_cpu_moe=args.n_cpu_moe,
        llama_margin=args.margin,
        llama_mmap=args.load_mode == "mmap",
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        inputs = _inputs(args)
        plan = build_plan(inputs)
        parallel = parallel_table(inputs, args.parallel) if args.parallel else None
    except (UsageError, ValueError) as error:
        print(f"scripts/plan: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**plan.to_dict(), **({"parallel": parallel.to_dict()} if parallel else {})}, indent=2))
    else:
        print(format_plan_table(plan) + (f"\n\n{format_parallel_table(parallel)}" if parallel else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
