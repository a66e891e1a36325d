"""The grammars of the names a stack passes to other programs, each as that program defines it.

Every check returns None for a valid value or a short phrase saying what is wrong, so that
settings.py can turn it into one message with the fix. The sources are the pinned Ollama's
types/model/name.go, the distribution reference grammar Docker parses images with, Docker's
restricted name pattern for containers and volumes, RFC 1123 host names, and useradd's default
user-name rule.
"""

import ipaddress
import re
from typing import Optional

# --- Ollama model names (types/model/name.go, ParseNameBare and isValidPart) ---------------------

_OLLAMA_FIRST = r"[A-Za-z0-9_]"
_OLLAMA_PARTS = {
    # part: (pattern of the characters after the first, maximum length)
    "host": (re.compile(rf"{_OLLAMA_FIRST}[A-Za-z0-9_.:-]*"), 350),
    "namespace": (re.compile(rf"{_OLLAMA_FIRST}[A-Za-z0-9_-]*"), 80),
    "model": (re.compile(rf"{_OLLAMA_FIRST}[A-Za-z0-9_.-]*"), 80),
    "tag": (re.compile(rf"{_OLLAMA_FIRST}[A-Za-z0-9_.-]*"), 80),
}
OLLAMA_DEFAULTS = {"host": "registry.ollama.ai", "namespace": "library", "tag": "latest"}


def split_ollama_name(name: str) -> dict[str, Optional[str]]:
    """The parts of `[scheme://][host/][namespace/]model[:tag]` the way Ollama cuts them; an empty
    part after a separator is "" (Ollama's MissingPart), which no rule accepts."""
    parts: dict[str, Optional[str]] = {"scheme": None, "host": None, "namespace": None, "model": None, "tag": None}
    rest = name
    if rest.rfind(":") > rest.rfind("/"):
        rest, _, parts["tag"] = rest.rpartition(":")
    rest, slash, parts["model"] = rest.rpartition("/")
    if not slash:
        return parts
    rest, slash, parts["namespace"] = rest.rpartition("/")
    if not slash:
        return parts
    scheme, separator, host = rest.partition("://")
    parts["scheme"], parts["host"] = (scheme, host) if separator else (None, rest)
    return parts


def ollama_name_problem(name: str) -> Optional[str]:
    parts = split_ollama_name(name)
    if parts["scheme"] is not None and parts["scheme"] not in ("http", "https"):
        return f"names the scheme {parts['scheme']!r}; a registry is reached over http:// or https://"
    for part, (pattern, longest) in _OLLAMA_PARTS.items():
        text = parts[part]
        if text is None:
            continue
        if not text:
            return f"has an empty {part}"
        if len(text) > longest:
            return f"has a {part} of {len(text)} characters (Ollama allows {longest})"
        if not pattern.fullmatch(text):
            return (f"has an invalid {part} {text!r}: Ollama allows letters, digits and _ first, then "
                    + {"host": "also . : -", "namespace": "also -", "model": "also . -", "tag": "also . -"}[part])
    return None


def ollama_full_name(name: str) -> str:
    """The name Ollama stores a model under (defaults filled in), compared without case as Ollama does."""
    parts = split_ollama_name(name)
    full = {key: parts[key] or OLLAMA_DEFAULTS.get(key, "") for key in ("host", "namespace", "model", "tag")}
    return f"{full['host']}/{full['namespace']}/{full['model']}:{full['tag']}".lower()


# --- Docker image references (the distribution reference grammar) ------------------------------

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
# go-digest accepts only the algorithms it implements, each with its exact hex length.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_REFERENCE = re.compile(
    rf"(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<algorithm>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):(?P<hex>[0-9a-fA-F]{{32,}}))?",
    re.ASCII,
)
_NAME_TOTAL_LENGTH = 255


def image_reference_problem(reference: str) -> Optional[str]:
    match = _REFERENCE.fullmatch(reference)
    if match is None:
        return ("is not an image reference ([registry[:port]/]path[:tag][@sha256:digest], lowercase path, "
                "tag of letters, digits, _ . -)")
    if len(match["name"]) > _NAME_TOTAL_LENGTH:
        return f"has a repository name longer than {_NAME_TOTAL_LENGTH} characters"
    if match["algorithm"] is not None:
        expected = _DIGEST_HEX_LENGTH.get(match["algorithm"])
        if expected is None:
            return f"has a digest of unknown algorithm {match['algorithm']!r} (use sha256)"
        if len(match["hex"]) != expected or match["hex"] != match["hex"].lower():
            return f"has a {match['algorithm']} digest that is not {expected} lowercase hex digits"
    return None


def image_is_pinned(reference: str) -> bool:
    match = _REFERENCE.fullmatch(reference)
    return bool(match and (match["algorithm"] or (match["tag"] and match["tag"] != "latest")))


# --- Docker container and volume names (daemon/names: RestrictedNamePattern) --------------------

_DOCKER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", re.ASCII)
# Docker sets no maximum; a volume is a directory on the host, and a file name holds 255 bytes.
DOCKER_NAME_LONGEST = 255


def docker_name_problem(name: str) -> Optional[str]:
    if not _DOCKER_NAME.fullmatch(name):
        return "is not a Docker name: 2 or more of letters, digits, _ . -, starting with a letter or digit"
    if len(name) > DOCKER_NAME_LONGEST:
        return f"is longer than {DOCKER_NAME_LONGEST} characters"
    return None


# --- SSH targets: host addresses and user names ------------------------------------------------

_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)


def host_address_problem(address: str) -> Optional[str]:
    """A DNS name (RFC 1123) or an IPv4/IPv6 literal without brackets or zone."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        parsed = None
    if parsed is not None:
        if "%" in address:
            return "is a scoped IPv6 address; use the VM's routable address"
        return None
    labels = address.split(".")
    if len(address) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        return "is neither an IP address nor a DNS name (labels of letters, digits and inner -, joined by dots)"
    if labels[-1].isdigit():
        return "looks like an IP address but is not one"
    return None


_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}", re.ASCII)


def user_name_problem(user: str) -> Optional[str]:
    if not _USER.fullmatch(user):
        return "is not a user name: up to 32 of lowercase letters, digits, _ and -, starting with a letter or _"
    return None
