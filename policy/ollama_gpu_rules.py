"""The rules of the ollama-gpu policy pack, as pure functions of a resource's type and inputs.

Each rule returns one message per violation it finds (an empty list when the resource passes); a
message says what is wrong and which config key, or which line of the program, fixes it. Inputs
arrive the way the engine hands them to a policy pack: camelCase keys, lists of dicts, and
pulumi_policy's read-only Mapping/Sequence proxies rather than dicts and lists, so the rules only
use the abstract collection types. Reading a value that is unknown during a preview raises
pulumi_policy's UnknownValueError, which the SDK reports as "can't run policy during preview"
instead of a pass or a fail.
"""

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
DOCKER_PROVIDER = "pulumi:providers:docker"
REMOTE_COMMAND_PREFIX = "command:remote:"

PUBLIC_BIND_LABEL = "ollama-gpu.allow-public-bind"
# A fleet host's server, also published on its private address for the router.
ROUTER_BACKEND_LABEL = "ollama-gpu.router-backend"
# Networks the internet does not route to: RFC 1918, carrier-grade NAT, IPv6 unique-local.
_PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))
RETAIN_LABEL = "ollama-gpu.retain-on-delete"

_IMAGE_ID = re.compile(r"^sha256:[0-9a-f]{64}$")
_SSH_OPTION = re.compile(r"^\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*?)\s*$")

# Ollama (envconfig.Var) trims blanks and quotes, lowercases the cache type, and counts every type
# except these as quantized (fs/ggml KVCacheTypeIsQuantized in the pinned version).
_UNQUANTIZED_KV_TYPES = {"", "f16", "f32", "bf16"}
# Ollama parses OLLAMA_FLASH_ATTENTION with Go's strconv.ParseBool and reads any other non-empty
# value as "on", so only these spellings switch it off.
_GO_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


def unpinned_images(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """RemoteImage.name and Container.image must name one build: a version tag or a digest."""
    field = {REMOTE_IMAGE: "name", CONTAINER: "image"}.get(resource_type)
    if field is None:
        return []
    reference = props.get(field)
    if not isinstance(reference, str):
        return []
    problem = _floating_reference(reference)
    if problem is None:
        return []
    return [
        f"{_short_type(resource_type)} {field} '{reference}' {problem}, so two deploys can run different "
        "Ollama builds. Set ollama-gpu:server.image to an explicit version tag or digest, e.g. "
        "ollama/ollama:<version> (pins.env holds the version the project is tested with)."
    ]


def public_api_binds(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A Container may publish ports only on loopback unless it carries the public-bind opt-in label;
    a fleet's router backend also on a private-network address."""
    if resource_type != CONTAINER or _has_true_label(props.get("labels"), PUBLIC_BIND_LABEL):
        return []
    backend = _has_true_label(props.get("labels"), ROUTER_BACKEND_LABEL)
    violations = []
    for port in _items(props.get("ports")):
        address = port.get("ip") or ""
        if _is_loopback(address) or (backend and _is_private(address)):
            continue
        where = address or "every interface (Docker's default when no ip is given)"
        violations.append(
            f"Container port {_number(port.get('internal'))} is published on {where}, which exposes the "
            "unauthenticated Ollama API beyond this host. Keep ollama-gpu:server.bindAddress at 127.0.0.1 "
            "and reach the API through an SSH tunnel, or set ollama-gpu:server.allowPublicBind: true when a "
            f"firewall guards the port (the program then labels the container {PUBLIC_BIND_LABEL}=true)."
        )
    return violations


def unretained_volumes(resource_type: str, props: Mapping[str, Any], protected: bool) -> list[str]:
    """A docker Volume (the project's only one holds the models) must outlive the stack.

    The analyzer protocol of the installed pulumi-policy (1.21) sends `protect` but not
    `retain_on_delete`, so a policy cannot see the option the program uses. The checks that remain
    honest are `protect` itself, or the RETAIN_LABEL marker, which the program sets on the volume
    from the same constant it passes to `retain_on_delete` (its own unit test asserts the option on
    the registration request). Every Volume is checked, not a name, because the docker volume name
    is configurable (ollama-gpu:server.modelsVolume).
    """
    if resource_type != VOLUME or protected or _has_true_label(props.get("labels"), RETAIN_LABEL):
        return []
    return [
        f"Volume '{props.get('name')}' holds the downloaded models (tens of GB) and would be deleted with "
        "the stack. The program must register it with ResourceOptions(retain_on_delete=True) and the "
        f"label {RETAIN_LABEL}=true that declares it (policy packs cannot read retain_on_delete), or "
        "with protect=True if destroy should refuse instead."
    ]


def unpinned_ssh_host_keys(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every SSH connection the program opens must refuse a host whose key is not the pinned one."""
    if resource_type.startswith(REMOTE_COMMAND_PREFIX):
        connection = props.get("connection")
        if not isinstance(connection, Mapping) or _is_filled(connection.get("hostKey")):
            return []
        return [
            f"{_short_type(resource_type)} connects to {connection.get('host')} without connection.hostKey, "
            "so whatever machine answers on that address receives the commands. Set "
            "ollama-gpu:host.hostKey to the line `ssh-keyscan -t ed25519 HOST` prints, without the host name."
        ]
    if resource_type == DOCKER_PROVIDER:
        host = props.get("host")
        if not isinstance(host, str) or not host.startswith("ssh://"):
            return []
        checking = _first_ssh_option(_ssh_opts(props.get("sshOpts")), "stricthostkeychecking")
        if checking == "yes":
            return []
        found = f"StrictHostKeyChecking={checking}" if checking else "no StrictHostKeyChecking option"
        return [
            f"Docker provider for {host} runs ssh with {found}, so ssh may accept a host key it has "
            "never seen. The program must pass sshOpts '-o StrictHostKeyChecking=yes' and "
            "'-o UserKnownHostsFile=<file holding ollama-gpu:host.hostKey>' (ssh uses the first value "
            "given for an option, so no earlier StrictHostKeyChecking may override it)."
        ]
    return []


def kv_cache_without_flash_attention(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """A quantized OLLAMA_KV_CACHE_TYPE only takes effect with OLLAMA_FLASH_ATTENTION explicitly on."""
    if resource_type != CONTAINER:
        return []
    env = _container_env(props.get("envs"))
    cache_type = _ollama_value(env.get("OLLAMA_KV_CACHE_TYPE")).lower()
    if cache_type in _UNQUANTIZED_KV_TYPES:
        return []
    flash_attention = _ollama_value(env.get("OLLAMA_FLASH_ATTENTION"))
    if flash_attention and flash_attention not in _GO_FALSE:
        return []
    state = (
        f"off (OLLAMA_FLASH_ATTENTION={flash_attention})"
        if flash_attention
        else "not set, so it depends on the model architecture and GPU"
    )
    return [
        f"Container sets OLLAMA_KV_CACHE_TYPE={cache_type} but flash attention is {state}. Without flash "
        "attention Ollama drops the quantized type with only a log warning and allocates an f16 KV cache, "
        "larger than the plan assumed. Set ollama-gpu:server.env.flashAttention: true, or "
        "ollama-gpu:server.env.kvCacheType: f16."
    ]


def _floating_reference(reference: str) -> Optional[str]:
    """Why an image reference can change under the same name, or None when it cannot."""
    if _IMAGE_ID.match(reference):
        return None
    repository, _, digest = reference.partition("@")
    if digest:
        return None
    # A ':' before the last '/' belongs to a registry port, not to a tag.
    tag = repository.rsplit("/", 1)[-1].partition(":")[2]
    if not tag:
        return "has no tag, which Docker reads as 'latest'"
    if tag == "latest":
        return "uses the moving tag 'latest'"
    return None


def _short_type(resource_type: str) -> str:
    return resource_type.rsplit(":", 1)[-1]


def _items(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in _sequence(value) if isinstance(item, Mapping)]


def _strings(value: Any) -> list[str]:
    return [item for item in _sequence(value) if isinstance(item, str)]


def _sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, Sequence) and not isinstance(value, str) else ()


def _number(value: Any) -> Any:
    # Numbers cross the analyzer protocol as protobuf doubles: show 11434, not 11434.0.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _has_true_label(labels: Any, name: str) -> bool:
    return any(label.get("label") == name and label.get("value") == "true" for label in _items(labels))


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _is_private(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in _PRIVATE_NETWORKS if network.version == ip.version)


def _is_filled(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _ssh_opts(value: Any) -> list[str]:
    # A provider's non-string inputs reach the engine JSON-encoded (the SDK stores provider config
    # as strings), so sshOpts may be a list or the text of one.
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [value]
    return _strings(value)


def _first_ssh_option(arguments: list[str], keyword: str) -> Optional[str]:
    """The value ssh would use for an -o option: the first one given wins, keywords ignore case."""
    options = []
    expect_option = False
    for argument in arguments:
        if expect_option:
            options.append(argument)
            expect_option = False
        elif argument == "-o":
            expect_option = True
        elif argument.startswith("-o"):
            options.append(argument[2:])
    for option in options:
        match = _SSH_OPTION.match(option)
        if match and match.group(1).lower() == keyword:
            return match.group(2).strip("\"'").lower()
    return None


def _container_env(envs: Any) -> dict[str, str]:
    # Docker lets a later duplicate of a variable replace an earlier one; a dict keeps the last.
    pairs = (entry.partition("=") for entry in _strings(envs))
    return {name: value for name, _, value in pairs}


def _ollama_value(value: Optional[str]) -> str:
    return (value or "").strip().strip("\"'")
