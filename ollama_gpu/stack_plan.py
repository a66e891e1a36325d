"""From stack settings to the planner's inputs: the one place the program, `make plan`, the bench
and the tests turn a stack into a plan."""

from typing import Any, Optional

from ollama_gpu.planner.catalog import CATALOG, alternatives, catalog_geometry
from ollama_gpu.planner.geometry import ModelGeometry
from ollama_gpu.planner.gguf_geometry import geometry_from_gguf
from ollama_gpu.planner.hardware import PROFILES
from ollama_gpu.planner.plan import Plan, PlanInputs, build_plan
from ollama_gpu.errors import ConfigError
from ollama_gpu.settings import Settings

GB = 1e9


def model_geometry(settings: Settings) -> Optional[ModelGeometry]:
    model = settings.model
    if model.gguf_path:
        try:
            return geometry_from_gguf(model.gguf_path, name=model.base)
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"stack '{settings.stack}': ollama-gpu:model.ggufPath = {model.gguf_path!r} cannot be read "
                f"({error}). Fix: point it at the model's GGUF file, or unset it for a catalog model."
            ) from None
    return catalog_geometry(model.base) if model.base in CATALOG else None


def build_stack_plan(settings: Settings) -> Optional[Plan]:
    """None when the planner knows nothing of the model (not in its catalog, no ggufPath)."""
    geometry = model_geometry(settings)
    if geometry is None:
        return None
    hardware, env, parameters = settings.hardware, settings.server.env, settings.model.parameters
    explicit = {
        "gpu_free_vram": int(hardware.gpu_free_vram) if hardware.gpu_free_vram is not None else None,
        "gpu_bandwidth": hardware.gpu_bandwidth_gbps * GB if hardware.gpu_bandwidth_gbps else None,
        "host_ram": int(hardware.host_ram) if hardware.host_ram is not None else None,
        "host_ram_bandwidth": hardware.host_ram_bandwidth_gbps * GB if hardware.host_ram_bandwidth_gbps else None,
        "prefill_tokens_per_s": hardware.prefill_tokens_per_second,
    }
    try:
        inputs = PlanInputs.for_profile(
            PROFILES[settings.profile],
            geometry,
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
            # The pinned 0.24.0 CUDA build runs host-resident blocks' prompt batches on the GPU
            # (measured: README "GPU lab"), which sets the GPU graph and the prefill rate.
            op_offload=PROFILES[settings.profile].gpu is not None,
        )
        return build_plan(inputs)
    except ValueError as error:
        # The planner refuses inputs it cannot place (e.g. a GGUF whose head size a quantized KV
        # cache cannot hold); that is a fact about this stack's settings, not a crash.
        raise ConfigError(
            f"stack '{settings.stack}': ollama-gpu:model.base = {settings.model.base!r} cannot be planned with "
            f"these settings ({error}). Fix: check model.ggufPath, server.env.kvCacheType and hardware.*."
        ) from None


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
