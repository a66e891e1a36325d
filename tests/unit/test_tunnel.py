"""The `tunnel` output is run on the operator's own machine, as `$(pulumi stack output tunnel)` (the
README's way: words split, quotes not removed) or pasted. No user or address may turn into an ssh
option there: `-oProxyCommand=...` makes ssh run a command. Settings refuse such values; the
command itself must hold even for values that got past them. A stand-in `ssh` runs the real
client with -G, which prints the configuration the arguments produce and connects nowhere."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ollama_gpu.config_loader import load_settings
from ollama_gpu.endpoints import client_endpoint, tunnel_command
from ollama_gpu.errors import ConfigError
from tests.unit.conftest import AGENT_SOCKET, remote_config

HOSTILE = [
    "-oProxyCommand=touch${IFS}pwned",
    "-oProxyCommand=touch pwned",
    "-oLocalCommand=touch${IFS}pwned -oPermitLocalCommand=yes",
    "$(touch pwned)",
    "`touch pwned`",
    "x;touch pwned",
]


@pytest.fixture
def ssh_config_printer(tmp_path) -> Path:
    real_ssh = shutil.which("ssh")
    if real_ssh is None:
        if os.environ.get("CI") == "true":
            pytest.fail("ssh is required in CI: apt-get install -y openssh-client")
        pytest.skip("ssh is not installed (apt-get install -y openssh-client)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "ssh"
    stand_in.write_text(f'#!/bin/sh\nexec {real_ssh} -G -F /dev/null "$@"\n')
    stand_in.chmod(0o755)
    return bin_dir


def _hostile_settings(field: str, value: str):
    """Valid settings with one host field replaced behind validation's back."""
    settings = load_settings("a10", remote_config("a10"), agent_socket=AGENT_SOCKET)
    return settings.model_copy(update={"host": settings.host.model_copy(update={field: value})})


def _ssh_sees(tunnel: str, bin_dir: Path, cwd: Path, pasted: bool) -> str:
    (cwd / "tunnel").write_text(tunnel)
    script = '$(cat tunnel)' if not pasted else tunnel
    result = subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, timeout=30)
    return result.stdout + result.stderr


@pytest.mark.parametrize("pasted", [False, True], ids=["as-readme", "pasted"])
@pytest.mark.parametrize("field", ["user", "address"])
@pytest.mark.parametrize("value", HOSTILE)
def test_no_user_or_address_becomes_an_ssh_option_or_a_command(ssh_config_printer, tmp_path, field, value, pasted):
    seen = _ssh_sees(tunnel_command(_hostile_settings(field, value)), ssh_config_printer, tmp_path, pasted)

    assert "proxycommand" not in seen.lower(), seen
    assert "permitlocalcommand yes" not in seen.lower(), seen
    assert not list(tmp_path.glob("pwned*"))


def test_the_tunnel_forwards_the_api_port_to_the_configured_host(ssh_config_printer, tmp_path):
    settings = load_settings("a10", remote_config("a10", port=2222), agent_socket=AGENT_SOCKET)
    seen = _ssh_sees(tunnel_command(settings), ssh_config_printer, tmp_path, pasted=False)
    assert "user ubuntu" in seen and "hostname 203.0.113.10" in seen and "port 2222" in seen
    assert "localforward 11434 [127.0.0.1]:11434" in seen.lower()


@pytest.mark.parametrize("field", ["user", "address"])
@pytest.mark.parametrize("value", HOSTILE)
def test_settings_refuse_such_users_and_addresses(field, value):
    with pytest.raises(ConfigError, match=f"ollama-gpu:host.{field} = "):
        load_settings("a10", remote_config("a10", **{field: value}), agent_socket=AGENT_SOCKET)


def test_an_ipv6_host_is_bracketed_in_the_endpoint():
    config = remote_config("a10", {"server": {"bindAddress": "::", "allowPublicBind": True}}, address="2001:db8::10")
    assert client_endpoint(load_settings("a10", config, agent_socket=AGENT_SOCKET)) == "http://[2001:db8::10]:11434"
