"""ollama-gpu: the recipe in field-notes.md as a Pulumi program, in the recipe's order."""

import pulumi

from components.engine_stop import exit_quietly_when_stopped
from components.gateway import Gateway
from components.host_deployment import deploy_host, model_path
from components.model_alias import create_request
from components.router import Router, master_key, router_config
from components.transport import CommandTarget
from components.validation import load_settings_or_fail, plan_or_fail
from ollama_gpu.endpoints import api_url_on_host, client_endpoint, gateway_site_name, gateway_url, tunnel_command
from ollama_gpu.fleet import fleet_members, format_fleet_table, router_tunnel, router_upstream, router_url
from ollama_gpu.llama_server_argv import server_arguments
from ollama_gpu.planner.plan import format_plan_table
from ollama_gpu.server_env import effective_env

# A failed step ends the update with its own reason, not a traceback of the SDK's shutdown.
exit_quietly_when_stopped()
# 0. Typed config, validated as a whole: one message and nothing registered if it is wrong.
settings = load_settings_or_fail()

if not settings.hosts:
    # 0b. Where layers and KV cache land, the decode bound and the prompt budget; refuses a model that cannot load.
    plan = plan_or_fail(settings)
    # 1-5. Host prep, the models volume, the engine (Ollama with its model alias, or llama-server), verification.
    host = deploy_host(settings, plan)

    # 6. Opt-in: the team endpoint, HTTPS with API keys in front of the loopback-only API.
    gateway = Gateway(
        "gateway", settings.gateway, host.docker_engine, CommandTarget.for_settings(settings),
        site_name=gateway_site_name(settings), upstream=api_url_on_host(settings), served=settings.server.engine,
        server=host.server_container,
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
    router = Router(
        "router", settings.router, hosts[router_host.name].docker_engine, config=router_config(settings, members),
        backends_ready=[deployed.ready for deployed in hosts.values()],
    ) if router_host is not None else None

    # 8. Opt-in: the team endpoint in front of the router, per-person keys in place of its master key.
    router_member = next((member.settings for member in members if router_host and member.name == router_host.name), None)
    gateway = Gateway(
        "gateway", settings.gateway, hosts[router_host.name].docker_engine, CommandTarget.for_settings(router_member),
        site_name=gateway_site_name(router_member), upstream=router_upstream(settings), served="router",
        server=router.container, upstream_key=master_key(settings.router),
    ) if router and settings.gateway.enabled else None

    pulumi.export("endpoint", router_url(settings))
    pulumi.export("tunnel", router_tunnel(settings))
    pulumi.export("plan", {name: plan.to_dict() if plan else None for name, plan in plans.items()})
    pulumi.export("plan_table", format_fleet_table(plans))
    pulumi.export("verification", {name: deployed.verification.result for name, deployed in hosts.items()})
    pulumi.export("gateway_url", gateway_url(router_member) if gateway else "")
    pulumi.export("gateway_ca_root", gateway.ca_root if gateway else "")

pulumi.export("alias", settings.model.alias)
pulumi.export("engine", settings.server.engine)
pulumi.export("effective_env", None if settings.uses_llama_server else effective_env(settings.server.env))
pulumi.export("alias_request", None if settings.uses_llama_server else create_request(settings.model))
pulumi.export("server_arguments", server_arguments(settings, model_path(settings)) if settings.uses_llama_server else None)
