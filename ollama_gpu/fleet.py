"""A fleet stack seen as one single-host stack per VM, and the plan table with the fleet's totals.

Each member is the stack's settings with `host`, `profile` and `hardware` taken from its `hosts`
entry, and the server published on the host's private address (the router's way in; settings
accept only private-network addresses there), so host prep, server, alias, planner and
verification run unchanged per host. One binding, not loopback and the private address: Docker
reports two bindings of one port in an order of its own, which the docker provider then shows
as a change on every `pulumi up` (found by tests/e2e/test_deploy_fleet.py). A member's
profile picks the planner's hardware and whether NVIDIA setup runs; server and model settings are
the stack's, so every host serves the same alias with the same parameters (the router needs that).
Nothing here imports Pulumi.
"""

import shlex
from dataclasses import dataclass
from typing import Optional

from ollama_gpu.endpoints import api_url_on_host
from ollama_gpu.planner.plan import Plan, format_plan_table
from ollama_gpu.planner.units import format_ollama
from ollama_gpu.settings import FleetHostSettings, HostSettings, RouterSettings, Settings


@dataclass(frozen=True)
class FleetMember:
    name: str
    settings: Settings


def fleet_members(settings: Settings) -> tuple[FleetMember, ...]:
    return tuple(FleetMember(host.name, _member_settings(settings, host)) for host in settings.hosts)


def _member_settings(settings: Settings, host: FleetHostSettings) -> Settings:
    ssh = HostSettings(address=host.address, user=host.user, port=host.port, hostKey=host.host_key)
    return settings.model_copy(update={
        "host": ssh,
        "server": settings.server.model_copy(update={"bind_address": host.private_address}),
        "hosts": [],
        "router": RouterSettings(),
        "profile": host.profile or settings.profile,
        "hardware": host.hardware or settings.hardware,
    })


def backend_url(member: FleetMember) -> str:
    """Where the router reaches a member's Ollama: its private address, where the server is published."""
    return api_url_on_host(member.settings)


def router_url(settings: Settings) -> str:
    """The router as a client on the router host (or at the local end of router_tunnel) reaches it."""
    if not settings.router.enabled:
        return ""
    address = settings.router.bind_address
    if address in ("127.0.0.1", "::1") or address.startswith("127."):
        address = "127.0.0.1"
    return f"http://{f'[{address}]' if ':' in address else address}:{settings.router.port}/v1"


def router_upstream(settings: Settings) -> str:
    """Where the gateway, on the router host's network, reaches the router (on loopback there)."""
    return f"http://127.0.0.1:{settings.router.port}"


def router_tunnel(settings: Settings) -> str:
    """`ssh -L` to the router on its host, as tunnel_command does for one server."""
    host = settings.router_host
    if host is None:
        return ""
    router = settings.router
    bound = f"[{router.bind_address}]" if ":" in router.bind_address else router.bind_address
    destination = shlex.quote(f"{host.user}@{host.address}")
    return (f"ssh -N -o ExitOnForwardFailure=yes -L {router.port}:{bound}:{router.port} "
            f"-p {host.port} -- {destination}")


def format_fleet_table(plans: dict[str, Optional[Plan]]) -> str:
    """Each host's plan, then one line per host and the fleet's totals: the decode bounds add up
    because each host decodes its own requests."""
    sections, rows = [], [("host", "GPU", "host RAM", "layers on GPU", "decode tokens/s")]
    totals = {"gpu": 0, "cpu": 0, "speed": 0.0}
    for name, plan in plans.items():
        if plan is None:
            sections.append(f"== {name}: no plan")
            rows.append((name, "-", "-", "-", "-"))
            continue
        p = plan.placement
        sections.append(f"== {name}\n{format_plan_table(plan)}")
        rows.append((name, format_ollama(p.gpu_total), format_ollama(p.cpu_total),
                     f"{p.offloaded_layers}/{p.block_count + 1}", f"{plan.decode.tokens_per_s:.1f}"))
        totals["gpu"] += p.gpu_total
        totals["cpu"] += p.cpu_total
        totals["speed"] += plan.decode.tokens_per_s
    planned = sum(plan is not None for plan in plans.values())
    rows.append((f"fleet ({planned}/{len(plans)} planned)", format_ollama(totals["gpu"]), format_ollama(totals["cpu"]),
                 "", f"{totals['speed']:.1f}"))
    table = [f"{row[0]:<24}{row[1]:>12}{row[2]:>12}{row[3]:>15}{row[4]:>17}" for row in rows]
    return "\n\n".join([*sections, "Fleet\n" + "\n".join(table)])
