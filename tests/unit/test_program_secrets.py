"""The SSH private key, set as a Pulumi secret, reaches the SSH connections only as a secret and
shows up nowhere else: not in stack outputs, command text, container inputs, warnings, error
messages, the `make plan` listing, or a file. And no machine-local path (the agent socket) reaches
the state, where a new shell or another machine would find it dead."""

import json

import pytest
from pulumi.runtime.sync_await import _sync_await

from components.transport import CommandTarget
from ollama_gpu.config_loader import load_settings
from ollama_gpu.stack_render import _format_run
from tests.unit.conftest import (
    CONTAINER,
    REMOTE_COMMAND,
    STACKS,
    is_secret,
    remote_config,
    stack_values,
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
        for script in ("create", "delete"):
            assert not leaks(command.inputs.get(script) or ""), f"{command.name}.{script}"


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
    run = deploy(stack, stack_values(stack))
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
