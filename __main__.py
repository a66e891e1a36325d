"""ollama-gpu: the recipe in field-notes.md as a Pulumi program, in the recipe's order."""

import pulumi

from components.engine_stop import exit_quietly_when_stopped
from components.engine_switch import component_name, takes_over_from
from components.gateway import Gateway
from components.host_prep import HostPrep
from components.llama_server import MODELS_MOUNT, LlamaServer
from components.model_alias import ModelAlias, create_request
from components.model_file import ModelFile
from components.models_volume import models_volume
from components.ollama_server import OllamaServer, load_timeout_seconds
from components.plan_verification import PlanVerification
from components.transport import CommandTarget
from components.validation import load_settings_or_fail, plan_or_fail
from ollama_gpu.endpoints import api_url_on_host, client_endpoint, gateway_site_name, gateway_url, tunnel_command
from ollama_gpu.llama_server_argv import server_arguments
from ollama_gpu.model_source import ModelSource
from ollama_gpu.planner.plan import format_plan_table
from ollama_gpu.server_env import effective_env
from ollama_gpu.verification import expected_offload

# A failed step ends the update with its own reason, not a traceback of the SDK's shutdown.
exit_quietly_when_stopped()
# 0. Typed config, validated as a whole: one message and nothing registered if it is wrong.
settings = load_settings_or_fail()
# 0b. Where layers and KV cache land, the decode bound and the prompt budget; refuses a model that cannot load.
plan = plan_or_fail(settings)
target = CommandTarget.for_settings(settings)

# 1. Host prep: Docker, and for a GPU: driver check, NVIDIA toolkit, Docker's NVIDIA runtime, cgroups, GPU check.
host_ready = [HostPrep("host", settings.host_prep, target, gpu=settings.has_gpu, image=settings.engine_image)] if target.host else []

# 2. The models volume, kept on destroy and across engine switches.
docker_engine = target.docker_provider("docker", opts=pulumi.ResourceOptions(depends_on=host_ready))
volume = models_volume(settings.server.models_volume, docker_engine)

if settings.uses_llama_server:
    # 3. llama-server: the GGUF Ollama would pull, fetched into the volume; the server loads it at every start.
    model_file = ModelFile("model-file", settings.model, target, models_volume=settings.server.models_volume, volume=volume)
    model_path = ModelSource.for_model(settings.model).path_in(MODELS_MOUNT)
    engine = LlamaServer(
        component_name("llama-server"), settings.llama_server, settings.server, docker_engine, target,
        gpu=settings.has_gpu, arguments=server_arguments(settings, model_path), volume=volume,
        model_file=model_file.fetch, api_url=api_url_on_host(settings), replaces=takes_over_from("ollama"),
    )
    server_container, report = engine.container, engine.report
else:
    # 3. Ollama: pinned image, tuned env, self-healing, loads the alias at every start.
    server = OllamaServer(
        component_name("ollama"), settings.server, docker_engine, gpu=settings.has_gpu,
        warm_model=settings.model.alias, volume=volume, replaces=takes_over_from("llama-server"),
    )
    # 4. Pull the base model, create the alias from the configured parameters, load it, report the placement.
    model = ModelAlias(
        "model", settings.model, target, api_url=api_url_on_host(settings), container=server.container,
        container_name=settings.server.container_name, models_volume=settings.server.models_volume,
        load_timeout_seconds=load_timeout_seconds(settings.server),
        expected_offload=expected_offload(plan) if settings.verification.fail_on_mismatch else "",
    )
    server_container, report = server.container, model.alias

# 5. Compare what the server did with the plan.
verification = PlanVerification("verification", settings, plan.to_dict() if plan else None, report)

# 6. Opt-in: the team endpoint, HTTPS with API keys in front of the loopback-only API.
gateway = Gateway(
    "gateway", settings.gateway, docker_engine, target, site_name=gateway_site_name(settings),
    upstream=api_url_on_host(settings), server=server_container,
) if settings.gateway.enabled else None

pulumi.export("endpoint", client_endpoint(settings))
pulumi.export("tunnel", tunnel_command(settings))
pulumi.export("alias", settings.model.alias)
pulumi.export("engine", settings.server.engine)
pulumi.export("effective_env", None if settings.uses_llama_server else effective_env(settings.server.env))
pulumi.export("alias_request", None if settings.uses_llama_server else create_request(settings.model))
pulumi.export("server_arguments", server_arguments(settings, model_path) if settings.uses_llama_server else None)
pulumi.export("plan", plan.to_dict() if plan else None)
pulumi.export("plan_table", format_plan_table(plan) if plan else "")
pulumi.export("verification", verification.result)
pulumi.export("gateway_url", gateway_url(settings))
pulumi.export("gateway_ca_root", gateway.ca_root if gateway else "")
