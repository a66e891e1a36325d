"""ollama-gpu: the recipe in field-notes.md as a Pulumi program, in the recipe's order."""

from dataclasses import dataclass
from typing import Optional

import pulumi

from components.engine_stop import exit_quietly_when_stopped
from components.gateway import Gateway
from components.host_prep import HostPrep
from components.model_alias import ModelAlias, create_request
from components.ollama_server import OllamaServer, load_timeout_seconds
from components.plan_verification import PlanVerification
from components.router import Router, router_config
from components.transport import CommandTarget
from components.validation import load_settings_or_fail, plan_or_fail
from ollama_gpu.endpoints import api_url_on_host, client_endpoint, gateway_site_name, gateway_url, tunnel_command
from ollama_gpu.fleet import fleet_members, format_fleet_table, router_tunnel, router_url
from ollama_gpu.planner.plan import Plan, format_plan_table
from ollama_gpu.server_env import effective_env
from ollama_gpu.settings import Settings
from ollama_gpu.verification import expected_offload


@dataclass
class Deployed:
    docker_engine: pulumi.ProviderResource
    server: OllamaServer
    model: ModelAlias
    verification: PlanVerification


def deploy_host(settings: Settings, plan: Optional[Plan], prefix: str = "", router_backend: bool = False) -> Deployed:
    """Steps 1-5 on one host; a fleet host's resources carry its name as `prefix` ("gpu1-")."""
    target = CommandTarget.for_settings(settings)
    # 1. Host prep: Docker, and for a GPU: driver check, NVIDIA toolkit, Docker's NVIDIA runtime, cgroups, GPU check.
    host_ready = [HostPrep(f"{prefix}host", settings.host_prep, target, gpu=settings.has_gpu, image=settings.server.image)] if target.host else []

    # 2. The Ollama container: pinned image, tuned env, kept models volume, self-healing, loads the alias at every start.
    docker_engine = target.docker_provider(f"{prefix}docker", opts=pulumi.ResourceOptions(depends_on=host_ready))
    server = OllamaServer(f"{prefix}ollama", settings.server, docker_engine, gpu=settings.has_gpu,
                          warm_model=settings.model.alias, router_backend=router_backend)

    # 3-4. Pull the base model, create the alias from the configured parameters, load it, report the placement.
    model = ModelAlias(
        f"{prefix}model", settings.model, target, api_url=api_url_on_host(settings), container=server.container,
        container_name=settings.server.container_name, models_volume=settings.server.models_volume,
        load_timeout_seconds=load_timeout_seconds(settings.server),
        expected_offload=expected_offload(plan) if settings.verification.fail_on_mismatch else "",
    )

    # 5. Compare what the server did with the plan.
    verification = PlanVerification(f"{prefix}verification", settings, plan.to_dict() if plan else None, model.alias)
    return Deployed(docker_engine, server, model, verification)


# A failed step ends the update with its own reason, not a traceback of the SDK's shutdown.
exit_quietly_when_stopped()
# 0. Typed config, validated as a whole: one message and nothing registered if it is wrong.
settings = load_settings_or_fail()

if not settings.hosts:
    # 0b. Where layers and KV cache land, the decode bound and the prompt budget; refuses a model that cannot load.
    plan = plan_or_fail(settings)
    host = deploy_host(settings, plan)

    # 6. Opt-in: the team endpoint, HTTPS with API keys in front of the loopback-only API.
    gateway = Gateway(
        "gateway", settings.gateway, host.docker_engine, CommandTarget.for_settings(settings),
        site_name=gateway_site_name(settings), upstream=api_url_on_host(settings), server=host.server.container,
    ) if settings.gateway.enabled else None

    pulumi.export("endpoint", client_endpoint(settings))
    pulumi.export("tunnel", tunnel_command(settings))
    pulumi.export("plan", plan.to_dict() if plan else None)
    pulumi.export("plan_table", format_plan_table(plan) if plan else "")
    pulumi.export("verification", host.verification.result)
    pulumi.export("gateway_url", gateway_url(settings))
    pulumi.export("gateway_ca_root", gateway.ca_root if gateway else "")
else:
    # A fleet: steps 0b-5 on every host, then one router in front of them all.
    members = fleet_members(settings)
    plans = {member.name: plan_or_fail(member.settings) for member in members}
    hosts = {member.name: deploy_host(member.settings, plans[member.name], f"{member.name}-", router_backend=True)
             for member in members}

    # 7. Opt-in: LiteLLM's router, least-busy across the hosts, retrying on another host, health-checked.
    router_host = settings.router_host
    if router_host is not None:
        Router("router", settings.router, hosts[router_host.name].docker_engine, config=router_config(settings, members),
               backends_ready=[deployed.model.alias for deployed in hosts.values()])

    pulumi.export("endpoint", router_url(settings))
    pulumi.export("tunnel", router_tunnel(settings))
    pulumi.export("plan", {name: plan.to_dict() if plan else None for name, plan in plans.items()})
    pulumi.export("plan_table", format_fleet_table(plans))
    pulumi.export("verification", {name: deployed.verification.result for name, deployed in hosts.items()})
    pulumi.export("gateway_url", "")
    pulumi.export("gateway_ca_root", "")

pulumi.export("alias", settings.model.alias)
pulumi.export("effective_env", effective_env(settings.server.env))
pulumi.export("alias_request", create_request(settings.model))
