"""The committed stack files load, and each setting is the stack file's value where it sets one and
its profile's default everywhere else. Pure config: no Pulumi runtime."""

import re
from typing import Any, Iterator

import pytest
import yaml

from ollama_gpu.config_loader import (
    PLAINTEXT_SECRET, SECRET_PLACEHOLDER, load_settings, values_from_engine_config, values_from_stack_file,
)
from ollama_gpu.errors import ConfigError
from ollama_gpu.profiles import PROFILE_DEFAULTS
from tests.unit.conftest import AGENT_SOCKET, HOST_ADDRESS, HOST_KEY, REPO, STACKS, stack_values

_BYTE_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def as_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)", text).groups()
    return int(float(number) * _BYTE_UNITS[unit])


def leaves(tree: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from leaves(value, path + (key,))
        else:
            yield path + (key,), value


def at(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def same_setting(configured: Any, effective: Any) -> bool:
    """Byte sizes are written as text ('116GB') and come back as numbers."""
    if isinstance(configured, str) and isinstance(effective, int) and not isinstance(effective, bool):
        return as_bytes(configured) == effective
    return configured == effective


@pytest.mark.parametrize("stack", STACKS)
def test_stack_file_is_its_profile_plus_its_own_lines(stack):
    values = stack_values(stack)
    settings = load_settings(stack, values, agent_socket=AGENT_SOCKET)
    effective = settings.model_dump(by_alias=True)
    overridden = dict(leaves(values))

    assert settings.stack == stack
    for path, value in overridden.items():
        assert same_setting(value, at(effective, path)), f"{'.'.join(path)}: file says {value!r}"
    defaults = [(path, value) for path, value in leaves(PROFILE_DEFAULTS[settings.profile]) if path not in overridden]
    assert defaults, "a profile with no defaults would make this test vacuous"
    for path, value in defaults:
        assert same_setting(value, at(effective, path)), f"{'.'.join(path)}: profile says {value!r}"


def test_a10_stack_is_the_operators_recipe_minus_the_knobs_that_do_nothing():
    settings = load_settings("a10", stack_values("a10"), agent_socket=AGENT_SOCKET)
    env, parameters = settings.server.env, settings.model.parameters
    assert settings.profile == "a10" and settings.has_gpu and settings.is_remote
    assert (env.flash_attention, env.kv_cache_type, int(env.gpu_overhead)) == (True, "q8_0", 1073741824)
    assert settings.model.base == "qwen3:30b-a3b-thinking-2507-q8_0"
    assert parameters.as_api() == {"num_ctx": 32768, "num_predict": 20480, "num_keep": -1, "use_mmap": False}
    # The recipe needed the cgroup fix only "on some VMs": off unless the GPU check asks for it.
    assert settings.host_prep.cgroup_fix is False
    assert int(settings.hardware.host_ram) == 116 * 10**9
    # Pinned, not the operator's :latest.
    assert not settings.server.image.endswith(":latest")


def test_v100_stack_keeps_a_smaller_gpu_reserve():
    settings = load_settings("v100", stack_values("v100"), agent_socket=AGENT_SOCKET)
    assert settings.profile == "v100" and settings.is_remote
    assert int(settings.server.env.gpu_overhead) == 512 * 2**20
    assert settings.host.address == "203.0.113.20"


def test_local_stack_is_cpu_only_on_the_local_engine():
    settings = load_settings("local", stack_values("local"), agent_socket=AGENT_SOCKET)
    assert (settings.profile, settings.has_gpu, settings.is_remote, settings.host) == ("none", False, False, None)
    assert settings.ssh_private_key is None


@pytest.mark.parametrize("stack", ["a10", "v100"])
def test_remote_stack_files_pin_the_host_key_and_bind_to_loopback(stack):
    settings = load_settings(stack, stack_values(stack), agent_socket=AGENT_SOCKET)
    assert settings.host.host_key.startswith("ssh-ed25519 ")
    assert settings.server.bind_address == "127.0.0.1"


@pytest.mark.parametrize("stack", ["a10", "v100"])
def test_remote_stack_files_name_no_identity_and_need_an_agent_or_a_key(stack):
    values = stack_values(stack)
    assert "sshPrivateKey" not in values
    with pytest.raises(ConfigError, match="sshPrivateKey"):
        load_settings(stack, values, agent_socket=None)
    settings = load_settings(stack, values, agent_socket=AGENT_SOCKET)
    assert settings.ssh_private_key is None


def test_the_agent_socket_is_checked_for_but_never_kept():
    """The providers find the agent through their own environment; a stored path would be dead
    on another machine or in a new shell."""
    host = {"address": HOST_ADDRESS, "hostKey": HOST_KEY}
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n-----END OPENSSH PRIVATE KEY-----"
    for values in ({"profile": "a10", "host": host}, {"profile": "a10", "host": host, "sshPrivateKey": key}):
        settings = load_settings("a10", values, agent_socket=AGENT_SOCKET)
        assert AGENT_SOCKET not in settings.model_dump_json() and AGENT_SOCKET not in repr(settings)
    with_key = load_settings("a10", {"profile": "a10", "host": host, "sshPrivateKey": key}, agent_socket=None)
    assert with_key.ssh_private_key.get_secret_value() == key
    local = load_settings("local", {"profile": "none"}, agent_socket=None)
    assert local.host is None


def test_stack_file_reader_masks_secure_values_and_ignores_other_namespaces(tmp_path):
    stack_file = tmp_path / "Pulumi.x.yaml"
    stack_file.write_text(yaml.safe_dump({"config": {
        "ollama-gpu:profile": "none",
        "ollama-gpu:sshPrivateKey": {"secure": "v1:ciphertext"},
        "ollama-gpu:server": {"env": {"origins": ["http://a.example"]}},
        "aws:region": "eu-west-1",
    }}))
    assert values_from_stack_file(stack_file) == {
        "profile": "none",
        "sshPrivateKey": SECRET_PLACEHOLDER,
        "server": {"env": {"origins": ["http://a.example"]}},
    }


def test_engine_config_decodes_objects_and_keeps_plain_strings():
    engine = {
        "ollama-gpu:profile": "a10",
        "ollama-gpu:server": '{"port": 11500}',
        "ollama-gpu:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----",
        "other:server": '{"port": 1}',
    }
    assert values_from_engine_config("a10", engine, secret_keys=["ollama-gpu:sshPrivateKey"]) == {
        "profile": "a10",
        "server": {"port": 11500},
        "sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----",
    }


def test_a_private_key_the_engine_does_not_hold_as_a_secret_never_reaches_the_settings():
    engine = {"ollama-gpu:profile": "a10", "ollama-gpu:sshPrivateKey": "-----BEGIN OPENSSH PRIVATE KEY-----"}
    assert values_from_engine_config("a10", engine)["sshPrivateKey"] == PLAINTEXT_SECRET


def test_every_stack_file_in_the_repository_is_covered():
    assert sorted(p.name for p in REPO.glob("Pulumi.*.yaml")) == sorted(f"Pulumi.{s}.yaml" for s in STACKS)
