"""Where the API is reachable: from the host itself (for the model scripts) and from a laptop."""

import ipaddress
import shlex

from ollama_gpu.settings import Settings


def api_url_on_host(settings: Settings) -> str:
    """The URL the host-side scripts use; a wildcard bind is reached through loopback."""
    address = ipaddress.ip_address(settings.server.bind_address)
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    host = f"[{address}]" if address.version == 6 else str(address)
    return f"http://{host}:{settings.server.port}"


def client_endpoint(settings: Settings) -> str:
    """What a client on the operator's machine uses: the tunnel's local end for a loopback bind."""
    if settings.host is None or ipaddress.ip_address(settings.server.bind_address).is_loopback:
        return f"http://127.0.0.1:{settings.server.port}"
    host = settings.host.address
    return f"http://{f'[{host}]' if ':' in host else host}:{settings.server.port}"


def tunnel_command(settings: Settings) -> str:
    """The README runs this as `$(pulumi stack output tunnel)`, where the shell splits words but
    removes no quotes, and people also paste it. Settings allow no character in user or address
    that either reading changes, so the quoting below is a second line: `--` ends ssh's options,
    so nothing after it is read as one (`-oProxyCommand=...` would run a command here)."""
    if settings.host is None:
        return ""
    port = settings.server.port
    destination = shlex.quote(f"{settings.host.user}@{settings.host.address}")
    # ExitOnForwardFailure: with the local port taken (a laptop's own Ollama), ssh stops instead of
    # leaving smoke and bench to talk to that other server.
    return f"ssh -N -o ExitOnForwardFailure=yes -L {port}:127.0.0.1:{port} -p {settings.host.port} -- {destination}"


def gateway_site_name(settings: Settings) -> str:
    """The name the gateway's certificate is for: its domain (ACME), else the host's address, or
    loopback for a stack on this machine (internal CA)."""
    return settings.gateway.domain or (settings.host.address if settings.host else "127.0.0.1")


def gateway_url(settings: Settings) -> str:
    """The team endpoint; empty when the stack runs no gateway."""
    if not settings.gateway.enabled:
        return ""
    site = gateway_site_name(settings)
    return f"https://{f'[{site}]' if ':' in site else site}:{settings.gateway.port}"
