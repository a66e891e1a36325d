"""Bad config through the real program: `pulumi up` stops with the one message, and the engine has
not received a single resource (the `reject` fixture checks the mock monitor)."""

import pytest

from tests.unit.conftest import AGENT_SOCKET, CONTAINER, HOST_ADDRESS, HOST_KEY, remote_config
from tests.unit.test_config_invalid import INVALID_CASES, assert_actionable


@pytest.mark.parametrize("stack, config, key, shown, hint", INVALID_CASES)
def test_invalid_config_registers_nothing_and_says_what_to_fix(reject, stack, config, key, shown, hint):
    assert_actionable(reject(stack, config), stack, key, shown, hint)


def test_public_bind_passes_once_opted_in_and_the_container_says_so(deploy, ssh_agent):
    run = deploy("a10", remote_config("a10", {"server": {"bindAddress": "0.0.0.0", "allowPublicBind": True}}))
    (container,) = run.of_type(CONTAINER)
    assert container.inputs["ports"][0]["ip"] == "0.0.0.0"
    assert container.inputs["labels"] == [{"label": "ollama-gpu.allow-public-bind", "value": "true"}]
    assert run.outputs["endpoint"] == f"http://{HOST_ADDRESS}:11434"


def test_the_operators_agent_counts_as_an_identity(deploy, reject, monkeypatch):
    config = {"profile": "v100", "host": {"address": HOST_ADDRESS, "hostKey": HOST_KEY}}
    message = reject("v100", config)
    assert "ollama-gpu:sshPrivateKey = (not set)" in message
    monkeypatch.setenv("SSH_AUTH_SOCK", AGENT_SOCKET)
    run = deploy("v100", config)
    # Checked for, never passed on: pulumi-command reads $SSH_AUTH_SOCK itself where it runs.
    assert "privateKey" not in run.by_name("model-pull").inputs["connection"]["value"]
    assert "agentSocketPath" not in run.by_name("model-pull").inputs["connection"]["value"]


def test_unreachable_host_is_refused_before_anything_is_registered(reject, ssh_agent, monkeypatch):
    """The SSH preflight runs unless OLLAMA_GPU_OFFLINE=1; nothing listens on local port 1."""
    monkeypatch.delenv("OLLAMA_GPU_OFFLINE")
    message = reject("a10", remote_config("a10", address="127.0.0.1", port=1))
    assert message.startswith("stack 'a10': cannot reach ollama-gpu:host.address = '127.0.0.1' on SSH port 1")
    assert "Fix:" in message


@pytest.mark.parametrize(
    "content, says",
    [(b"", "is not a GGUF file"), (b"GGUF\x03\x00", "is truncated or damaged"), (None, "is not a regular file")],
    ids=["empty", "truncated", "missing"],
)
def test_a_gguf_path_that_is_not_a_whole_gguf_is_one_message(reject, ssh_agent, tmp_path, content, says):
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    message = reject("a10", remote_config("a10", {"model": {"ggufPath": str(path)}}))
    assert message.startswith(f"stack 'a10': ollama-gpu:model.ggufPath = '{path}' cannot be read ({says}")
    assert "Fix:" in message and "Traceback" not in message
