"""From stack settings to the planner's inputs: the one place the program, `make plan`, the bench
and the tests turn a stack into a plan.

The model's geometry comes from, in order: model.ggufPath (a local file), the model's registry
(manifest, then the GGUF header by HTTP range requests, cached per digest), and, when no registry
answers and nothing is cached, the planner's built-in catalog. A model none of them knows gets no
plan and a warning; a model the registry says is missing or broken is a config error.
OLLAMA_GPU_NO_REGISTRY=1 skips the registry (air-gapped machines, the unit tests).
"""

import os
from dataclasses import dataclass
from typing import Any, Optional

from ollama_gpu.errors import ConfigError
from ollama_gpu.planner.catalog import CATALOG, alternatives, catalog_geometry
from ollama_gpu.planner.geometry import ModelGeometry
from ollama_gpu.planner.gguf_geometry import geometry_from_gguf
from ollama_gpu.planner.hardware import PROFILES
from ollama_gpu.planner.placement import UnpredictableModel
from ollama_gpu.planner.plan import Plan, PlanInputs, build_plan
from ollama_gpu.planner.registry import RegistryError, RegistryUnreachable, read_remote_model
from ollama_gpu.settings import Settings

GB = 1e9
NO_REGISTRY_ENV = "OLLAMA_GPU_NO_REGISTRY"


@dataclass(frozen=True)
class ModelSource:
    """The geometry to plan with (None: none known) and what to tell the user about where it came from."""

    geometry: Optional[ModelGeometry]
    notes: tuple[str, ...] = ()


def resolve_model(settings: Settings, registry: Optional[str] = None) -> ModelSource:
    """``registry`` overrides model.registry (a mirror's root URL; default: the host in model.base)."""
    model = settings.model
    registry = registry or model.registry
    if model.gguf_path:
        try:
            return ModelSource(geometry_from_gguf(model.gguf_path, name=model.base))
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"stack '{settings.stack}': ollama-gpu:model.ggufPath = {model.gguf_path!r} cannot be read "
                f"({error}). Fix: point it at the model's GGUF file, or unset it to read the model from its registry."
            ) from None
    if os.environ.get(NO_REGISTRY_ENV) == "1":
        return _from_catalog(model.base, f"{NO_REGISTRY_ENV}=1: the registry was not consulted")
    try:
        remote = read_remote_model(model.base, registry=registry)
    except RegistryUnreachable as error:
        return _from_catalog(model.base, str(error))
    except RegistryError as error:
        raise ConfigError(
            f"stack '{settings.stack}': ollama-gpu:model.base = {model.base!r}: {error}. Fix: name a model the "
            "registry serves (ollama.com/library), or set model.ggufPath to plan from a local GGUF file."
        ) from None
    return ModelSource(remote.geometry, remote.notes)


def _from_catalog(base: str, reason: str) -> ModelSource:
    if base in CATALOG:
        return ModelSource(catalog_geometry(base), (f"{reason}; planned with the built-in geometry of {base}",))
    return ModelSource(None, (
        f"no plan: {reason}, and the planner has no header of {base!r} cached or built in; "
        "set ollama-gpu:model.ggufPath to its GGUF file to plan it",
    ))


def _llama_server_inputs(settings: Settings) -> dict:
    """What the planner needs to place llama-server as the program runs it (ollama_gpu.llama_server_argv):
    the stack's nCpuMoe, or None for the planner's own smallest fitting N beside --fit's prediction;
    the --fit-target margin; --load-mode none for useMmap false."""
    if not settings.uses_llama_server:
        return {}
    llama = settings.llama_server
    return {
        "engine": "llama-server",
        "n_cpu_moe": llama.n_cpu_moe if llama.placement == "nCpuMoe" else None,
        "llama_margin": int(settings.server.env.gpu_overhead),
        "llama_mmap": settings.model.parameters.use_mmap is not False,
    }


def model_geometry(settings: Settings) -> Optional[ModelGeometry]:
    return resolve_model(settings).geometry


def plan_with_notes(settings: Settings) -> tuple[Optional[Plan], tuple[str, ...]]:
    """The plan, or None and the reasons there is none (unknown model, refused architecture)."""
    source = resolve_model(settings)
    if source.geometry is None:
        return None, source.notes
    hardware, env, parameters = settings.hardware, settings.server.env, settings.model.parameters
    explicit = {
        "gpu_free_vram": int(hardware.gpu_free_vram) if hardware.gpu_free_vram is not None else None,
        "gpu_bandwidth": hardware.gpu_bandwidth_gbps * GB if hardware.gpu_bandwidth_gbps else None,
        "host_ram": int(hardware.host_ram) if hardware.host_ram is not None else None,
        "host_ram_bandwidth": hardware.host_ram_bandwidth_gbps * GB if hardware.host_ram_bandwidth_gbps else None,
        "prefill_tokens_per_s": hardware.prefill_tokens_per_second,
    }
    per_gpu = tuple(int(free) for free in hardware.gpu_free_vram_per_gpu or ())
    try:
        plan = build_plan(
            PlanInputs.for_profile(
                PROFILES[settings.profile],
                source.geometry,
                **{key: value for key, value in explicit.items() if value is not None},
                num_ctx=parameters.num_ctx,
                num_predict=parameters.num_predict,
                num_batch=parameters.num_batch or 512,
                kv_cache_type=env.kv_cache_type,
                flash_attention=env.flash_attention,
                gpu_overhead=int(env.gpu_overhead),
                num_parallel=env.num_parallel,
                client_timeout_s=settings.client.timeout_seconds,
                alternatives=alternatives(settings.model.base),
                gpu_free_vrams=per_gpu if settings.has_gpu else (),
                num_gpu=parameters.num_gpu if parameters.num_gpu is not None else -1,
                source_notes=source.notes,
                # The pinned 0.24.0 CUDA build runs host-resident blocks' prompt batches on the GPU
                # (measured: README "GPU lab"), which sets the GPU graph and the prefill rate.
                op_offload=PROFILES[settings.profile].gpu is not None,
                **_llama_server_inputs(settings),
            )
        )
    except UnpredictableModel as refusal:
        return None, (*source.notes, f"no plan: {refusal}")
    except ValueError as error:
        # The planner refuses inputs it cannot place (e.g. a GGUF whose head size a quantized KV
        # cache cannot hold); that is a fact about this stack's settings, not a crash.
        raise ConfigError(
            f"stack '{settings.stack}': ollama-gpu:model.base = {settings.model.base!r} cannot be planned with "
            f"these settings ({error}). Fix: check model.ggufPath, server.env.kvCacheType and hardware.*."
        ) from None
    return plan, ()


def build_stack_plan(settings: Settings) -> Optional[Plan]:
    """None when the planner cannot plan the model (see plan_with_notes for why)."""
    return plan_with_notes(settings)[0]


def plan_for(settings: Settings) -> Optional[dict[str, Any]]:
    plan = build_stack_plan(settings)
    return plan.to_dict() if plan else None


def refuse_unloadable(settings: Settings, plan: Optional[Plan]) -> None:
    """A model that cannot load is a config error: caught before a 30 GB pull, not after."""
    if plan is None or not plan.errors:
        return
    problems = "; ".join(plan.errors)
    raise ConfigError(
        f"stack '{settings.stack}': ollama-gpu:model.base = {settings.model.base!r} cannot be served here: "
        f"{problems}. Fix: set ollama-gpu:hardware.hostRam to the host's real RAM if it is larger, choose a "
        f"smaller build (model.base), or lower model.parameters.numCtx / server.env.numParallel."
    )
