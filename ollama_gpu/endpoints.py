"""Where the API is reachable: from the host itself (for the model scripts) and from a laptop."""

import ipaddress

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
    return f"http://{settings.host.address}:{settings.server.port}"


def tunnel_command(settings: Settings) -> str:
    if settings.host is None:
        return ""
    port = settings.server.port
    return f"ssh -N -L {port}:127.0.0.1:{port} -p {settings.host.port} {settings.host.user}@{settings.host.address}"
