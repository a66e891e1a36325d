"""Steps 1-5 of the recipe on one host: what a one-host stack deploys, and what a fleet deploys on
each of its hosts (their resources prefixed with the host's name)."""

from dataclasses import dataclass
from typing import Any, Optional

import pulumi

from components.engine_switch import component_name, takes_over_from
from components.host_prep import HostPrep
from components.llama_server import MODELS_MOUNT, LlamaServer
from components.model_alias import ModelAlias
from components.model_file import ModelFile
from components.models_volume import models_volume
from components.ollama_server import OllamaServer, load_timeout_seconds
from components.plan_verification import PlanVerification
from components.transport import CommandTarget
from ollama_gpu.endpoints import api_url_on_host
from ollama_gpu.llama_server_argv import server_arguments
from ollama_gpu.llama_verification import expected_report
from ollama_gpu.model_source import ModelSource
from ollama_gpu.planner.plan import Plan
from ollama_gpu.settings import Settings
from ollama_gpu.verification import expected_offload


@dataclass
class Deployed:
    docker_engine: pulumi.ProviderResource
    server_container: Any
    # What says the model is served: the alias step (Ollama) or the server's report (llama-server).
    ready: Any
    verification: PlanVerification


def model_path(settings: Settings) -> str:
    """The GGUF as llama-server's --model names it inside the container."""
    return ModelSource.for_model(settings.model).path_in(MODELS_MOUNT)


def deploy_host(settings: Settings, plan: Optional[Plan], prefix: str = "", router_backend: bool = False) -> Deployed:
    target = CommandTarget.for_settings(settings)
    # 1. Host prep: Docker, and for a GPU: driver check, NVIDIA toolkit, Docker's NVIDIA runtime, cgroups, GPU check.
    host_ready = [HostPrep(f"{prefix}host", settings.host_prep, target, gpu=settings.has_gpu,
                           image=settings.engine_image)] if target.host else []

    # 2. The models volume, kept on destroy and across engine switches.
    docker_engine = target.docker_provider(f"{prefix}docker", opts=pulumi.ResourceOptions(depends_on=host_ready))
    volume = models_volume(settings.server.models_volume, docker_engine, prefix)

    if settings.uses_llama_server:
        # 3. llama-server: the GGUF Ollama would pull, fetched into the volume; the server loads it at every start.
        model_file = ModelFile(f"{prefix}model-file", settings.model, target,
                               models_volume=settings.server.models_volume, volume=volume)
        engine = LlamaServer(
            prefix + component_name("llama-server"), settings.llama_server, settings.server, docker_engine, target,
            gpu=settings.has_gpu, arguments=server_arguments(settings, model_path(settings)), volume=volume,
            model_file=model_file.fetch, api_url=api_url_on_host(settings), expected=expected_report(settings),
            replaces=takes_over_from("ollama"), router_backend=router_backend,
        )
        server_container, ready = engine.container, engine.report
    else:
        # 3. Ollama: pinned image, tuned env, self-healing, loads the alias at every start.
        server = OllamaServer(
            prefix + component_name("ollama"), settings.server, docker_engine, gpu=settings.has_gpu,
            warm_model=settings.model.alias, volume=volume, replaces=takes_over_from("llama-server"),
            router_backend=router_backend,
        )
        # 4. Pull the base model, create the alias from the configured parameters, load it, report the placement.
        model = ModelAlias(
            f"{prefix}model", settings.model, target, api_url=api_url_on_host(settings), container=server.container,
            container_name=settings.server.container_name, models_volume=settings.server.models_volume,
            load_timeout_seconds=load_timeout_seconds(settings.server),
            expected_offload=expected_offload(plan) if settings.verification.fail_on_mismatch else "",
        )
        server_container, ready = server.container, model.alias

    # 5. Compare what the server did with the plan.
    verification = PlanVerification(f"{prefix}verification", settings, plan.to_dict() if plan else None, ready)
    return Deployed(docker_engine, server_container, ready, verification)
