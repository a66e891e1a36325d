"""The SSH private key, set as a Pulumi secret, reaches the SSH connections only as a secret and
shows up nowhere else: not in stack outputs, command text, container inputs, warnings, error
messages, the `make plan` listing, or a file. And no machine-local path (the agent socket) reaches
the state, where a new shell or another machine would find it dead."""

import json

import pytest
import yaml
from pulumi.runtime.sync_await import _sync_await

from components.transport import CommandTarget
from ollama_gpu.config_loader import load_settings, values_from_stack_file
from ollama_gpu.errors import ConfigError
from ollama_gpu.stack_render import _format_run
from tests.unit.conftest import (
    CONTAINER,
    REMOTE_COMMAND,
    STACKS,
    is_secret,
    remote_config,
    ollama_stack_values,
    without_secrets,
)


@pytest.fixture
def keyed_config(private_key):
    return remote_config("a10", {"sshPrivateKey": private_key})


@pytest.fixture
def keyed_run(deploy, keyed_config):
    return deploy("a10", keyed_config, secret_keys=["sshPrivateKey"])


@pytest.fixture
def leaks(private_key):
    """Whether a text holds the key or any line of its body (a partial paste is a leak too)."""
    fragments = [line for line in private_key.splitlines() if "PRIVATE KEY" not in line]
    assert fragments and all(len(fragment) > 16 for fragment in fragments)
    return lambda text: any(fragment in text for fragment in fragments)


def test_no_stack_output_holds_the_key(keyed_run, leaks):
    assert keyed_run.outputs
    assert not leaks(json.dumps(keyed_run.outputs, default=repr))


def test_no_command_text_holds_the_key(keyed_run, leaks):
    commands = keyed_run.of_type(REMOTE_COMMAND)
    assert commands
    for command in commands:
        for text in ("create", "stdin", "delete"):
            assert not leaks(command.inputs.get(text) or ""), f"{command.name}.{text}"


def test_no_container_input_holds_the_key(keyed_run, leaks):
    (container,) = keyed_run.of_type(CONTAINER)
    assert not leaks(json.dumps(container.inputs))


def test_the_key_appears_in_recorded_inputs_only_inside_secret_markers(keyed_run, leaks):
    for resource in keyed_run.resources:
        assert not leaks(json.dumps(without_secrets(resource.inputs))), resource.name
    assert not any(leaks(warning) for warning in keyed_run.warnings)


def test_every_ssh_connection_carries_the_key_as_a_secret(keyed_run, private_key):
    for command in keyed_run.of_type(REMOTE_COMMAND):
        connection = command.inputs["connection"]
        assert is_secret(connection), command.name
        assert connection["value"]["privateKey"] == private_key


def test_the_program_marks_the_key_secret_itself(keyed_run, keyed_config, private_key):
    """pulumi-command happens to mark whole connections secret; the key must not rely on that."""
    connection = CommandTarget.for_settings(load_settings("a10", keyed_config)).connection
    assert _sync_await(connection.private_key.is_secret())
    assert _sync_await(connection.private_key.future()) == private_key


def test_plan_listing_shows_the_connection_but_not_the_key(keyed_run, leaks):
    listing = _format_run("a10", keyed_run)
    assert not leaks(listing)
    assert "[secret]" in listing
    assert "203.0.113.10" in listing


def test_the_key_is_never_written_to_a_file_nor_named_in_the_docker_options(keyed_run, offline_env, leaks):
    """`make plan` and the program run offline too: neither may leave the key on disk."""
    options = json.loads(keyed_run.by_name("docker").inputs["sshOpts"])
    assert not leaks(json.dumps(options))
    assert not any(o == "-i" or o.startswith("IdentityFile=") for o in options)
    assert not offline_env.exists() or not any(offline_env.rglob("*"))


@pytest.mark.parametrize("stack", STACKS)
def test_no_resource_input_or_output_holds_the_agent_socket(deploy, ssh_agent, stack):
    run = deploy(stack, ollama_stack_values(stack))
    for resource in run.resources:
        assert ssh_agent not in json.dumps(resource.inputs), resource.name
    assert ssh_agent not in json.dumps(run.outputs, default=repr)


def test_with_a_key_and_an_agent_the_state_holds_neither_the_socket_nor_a_plain_key(deploy, keyed_config, ssh_agent, leaks):
    run = deploy("a10", keyed_config, secret_keys=["sshPrivateKey"])
    for resource in run.resources:
        assert ssh_agent not in json.dumps(resource.inputs), resource.name
        assert not leaks(json.dumps(without_secrets(resource.inputs))), resource.name


def test_a_config_error_does_not_echo_the_key(reject, keyed_config, leaks):
    keyed_config["server"] = {"port": 0, "bogus": True}
    message = reject("a10", keyed_config, secret_keys=["sshPrivateKey"])
    assert "ollama-gpu:server.port = 0" in message
    assert not leaks(message)


def test_settings_never_print_the_key(keyed_config, leaks):
    settings = load_settings("a10", keyed_config)
    assert not leaks(repr(settings)) and not leaks(str(settings))
    assert not leaks(settings.model_dump_json())


# --- the key must be a Pulumi secret, and is never printed back ---------------------------------


def test_a_key_the_engine_does_not_hold_as_a_secret_is_refused_and_not_echoed(reject, keyed_config, leaks, offline_env):
    """A forgotten --secret commits the key to the stack file: refuse before anything is written."""
    message = reject("a10", keyed_config)
    assert "ollama-gpu:sshPrivateKey = [secret]: is stored in plain text" in message
    assert "pulumi config set --secret sshPrivateKey" in message
    assert not leaks(message)
    assert not list(offline_env.rglob("id"))


def test_a_plaintext_key_in_the_stack_file_is_refused_and_not_echoed(tmp_path, private_key, leaks):
    stack_file = tmp_path / "Pulumi.a10.yaml"
    stack_file.write_text(yaml.safe_dump({"config": {
        "ollama-gpu:profile": "a10",
        "ollama-gpu:host": {"address": "203.0.113.10", "hostKey": remote_config("a10")["host"]["hostKey"]},
        "ollama-gpu:sshPrivateKey": private_key,
    }}))
    with pytest.raises(ConfigError) as refused:
        load_settings("a10", values_from_stack_file(stack_file))
    assert "ollama-gpu:sshPrivateKey = [secret]: is stored in plain text" in str(refused.value)
    assert not leaks(str(refused.value))


@pytest.mark.parametrize(
    "secure",
    [pytest.param("", id="empty"), pytest.param(None, id="null"), pytest.param(42, id="number"),
     pytest.param({"nested": "x"}, id="mapping")],
)
def test_a_secure_value_that_is_not_ciphertext_text_is_refused(tmp_path, secure):
    stack_file = tmp_path / "Pulumi.a10.yaml"
    stack_file.write_text(yaml.safe_dump({"config": {"ollama-gpu:profile": "a10", "ollama-gpu:sshPrivateKey": {"secure": secure}}}))
    with pytest.raises(ConfigError, match=r"^stack 'a10': invalid configuration\n  ollama-gpu:sshPrivateKey = "):
        values_from_stack_file(stack_file)


@pytest.mark.parametrize("value", ["", "   ", "ssh-ed25519 AAAA a public key"], ids=["empty", "blank", "public-key"])
def test_a_secret_that_is_no_private_key_is_refused_without_echo(reject, value):
    config = remote_config("a10", {"sshPrivateKey": value}, sshAgentSocket=None)
    message = reject("a10", config, secret_keys=["sshPrivateKey"])
    assert "ollama-gpu:sshPrivateKey = [secret]: " in message
    assert "a public key" not in message


def test_a_private_key_pasted_as_the_host_key_is_not_echoed(reject, private_key, leaks):
    message = reject("a10", remote_config("a10", hostKey=private_key))
    assert "ollama-gpu:host.hostKey = (not shown: it looks like a private key)" in message
    assert not leaks(message)
