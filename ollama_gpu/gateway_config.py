"""The gateway's Caddyfile, rendered from ollama_gpu/templates/Caddyfile with explicit parameters.

Settings already refuse bad values with a message a user can act on; this module checks every
parameter again against a grammar that holds no Caddyfile syntax, so the rendered file can only
ever be the template's structure, whatever reaches it. Nothing here imports Pulumi.
"""

import ipaddress
import re
from dataclasses import dataclass

from ollama_gpu.template_fill import fill_template


# An API key: what `openssl rand -hex 32` or `secrets.token_urlsafe(32)` print. No character of it
# means anything to Caddy or to an HTTP header, and 32 characters are at least 128 bits.
API_KEY = re.compile(r"[A-Za-z0-9_-]{32,128}", re.ASCII)
_DNS_NAME = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
_ACME_DIRECTORY = re.compile(r"https://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?(/[A-Za-z0-9._~-]+)*/?", re.ASCII)
_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----\n([A-Za-z0-9+/=]{1,76}\n)+-----END CERTIFICATE-----\n?", re.ASCII)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}", re.ASCII)
_UPSTREAM = re.compile(r"http://(127\.[0-9.]+|\[::1\]|[0-9.]+|\[[0-9a-fA-F:]+\]):[0-9]{1,5}", re.ASCII)
_SERVED_PATH = re.compile(r"/[a-z0-9/_-]*\*?", re.ASCII)
# What the gateway forwards: inference and the read-only model API, nothing that changes the
# server. Through Ollama's /api/pull, /api/create, /api/copy, /api/delete, /api/push and /api/blobs
# any key holder could replace or delete the served model; llama-server's /slots shows every
# slot's prompt (other people's conversations), /props and /metrics its internals; the router's
# admin API (/key/*, /model/*, ...) would run with the master key the gateway adds.
SERVED_PATHS = {
    "ollama": ("/api/version", "/api/tags", "/api/show", "/api/ps", "/api/chat", "/api/generate", "/api/embed",
               "/api/embeddings", "/v1/*"),
    "llama-server": ("/health", "/v1/*"),
    "router": ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"),
}
# Where the gateway container finds gateway.acmeCaRoot (uploaded beside the Caddyfile).
ACME_CA_ROOT_PATH = "/etc/caddy/acme-ca-root.pem"
# Where Caddy (official image: XDG_DATA_HOME=/data) keeps the internal CA it creates at first start.
CA_ROOT_PATH = "/data/caddy/pki/authorities/local/root.crt"
INTERNAL_CA = "internal"


@dataclass(frozen=True)
class GatewayConfig:
    """`site_name` is the name clients dial (certificate name); `acme_email` None = internal CA;
    `served_paths` one of SERVED_PATHS; `upstream_key` the key the gateway sends upstream in place
    of the client's (the router's master key), None to send none."""

    site_name: str
    port: int
    bind_address: str
    upstream: str
    api_keys: tuple[str, ...]
    served_paths: tuple[str, ...]
    acme_email: str | None = None
    upstream_key: str | None = None
    # Another ACME CA than Let's Encrypt, and whether its root is uploaded to ACME_CA_ROOT_PATH.
    acme_directory: str | None = None
    acme_ca_root: bool = False


def site_name_problem(name: str) -> str | None:
    if is_ip_address(name):
        return None if "%" not in name else "is a scoped IPv6 address"
    return None if _DNS_NAME.fullmatch(name) else "is neither an IP address nor a DNS name"


def api_key_problem(key: str) -> str | None:
    if API_KEY.fullmatch(key):
        return None
    return "is not 32–128 characters of A-Z a-z 0-9 _ -"


def acme_directory_problem(url: str) -> str | None:
    return None if _ACME_DIRECTORY.fullmatch(url) else "is not an https:// URL of letters, digits and . - _ ~ /"


def pem_certificate_problem(text: str) -> str | None:
    return None if _PEM_CERTIFICATE.fullmatch(text) else "is not one PEM certificate"


def email_problem(address: str) -> str | None:
    return None if _EMAIL.fullmatch(address) else "is not an e-mail address"


def render_caddyfile(config: GatewayConfig) -> str:
    if not config.api_keys:
        raise ValueError("the gateway needs at least one API key")
    for key in config.api_keys:
        if api_key_problem(key):
            raise ValueError("an API key is not 32-128 characters of A-Z a-z 0-9 _ -")
    problems = [
        site_name_problem(config.site_name),
        None if 1 <= config.port <= 65535 else "port out of range",
        None if is_ip_address(config.bind_address) and "%" not in config.bind_address else "bind address is not an IP address",
        None if _UPSTREAM.fullmatch(config.upstream) else "upstream is not http://IP:PORT",
        None if config.acme_email is None or not email_problem(config.acme_email) else "ACME e-mail is not an address",
        None if config.served_paths and all(map(_SERVED_PATH.fullmatch, config.served_paths)) else "a served path is not /PATH",
        None if config.acme_directory is None or not acme_directory_problem(config.acme_directory)
        else "the ACME directory is not an https URL",
        None if config.acme_email or not (config.acme_directory or config.acme_ca_root) else "ACME settings without an e-mail",
        None if config.upstream_key is None or (config.upstream_key.startswith("sk-") and not api_key_problem(config.upstream_key[3:]))
        else "the upstream key is not sk-KEY",
    ]
    if any(problems):
        raise ValueError("; ".join(p for p in problems if p))
    site = f"[{config.site_name}]" if ":" in config.site_name else config.site_name
    return fill_template("Caddyfile", {
        "SITE_NAME": site,
        "DEFAULT_SNI": config.site_name,
        "PORT": str(config.port),
        "BIND_ADDRESS": config.bind_address,
        "TLS_ISSUER": config.acme_email or INTERNAL_CA,
        "TLS_ACME_LINES": "\n".join(line for line in (
            f"\t\tca {config.acme_directory}" if config.acme_directory else "",
            f"\t\tca_root {ACME_CA_ROOT_PATH}" if config.acme_ca_root else "") if line),
        "UPSTREAM": config.upstream,
        "SERVED_PATHS": " ".join(config.served_paths),
        "UPSTREAM_AUTHORIZATION": "-Authorization" if config.upstream_key is None
        else f'Authorization "Bearer {config.upstream_key}"',
        "AUTHORIZED_HEADER_LINES": "\n".join(f'\t\theader Authorization "Bearer {key}"' for key in config.api_keys),
    })



def is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
