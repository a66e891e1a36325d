"""How the program reaches the target: host scripts as pulumi-command commands (over SSH on a VM,
or on this machine for a stack without `host`), and the Docker engine through the docker provider.

Both kinds of stack get the same rendered scripts; only the transport differs, so a script that
passes the integration tests locally is the one that runs on the VM. Nothing machine-local goes
into a connection: with no key secret, the command and docker providers both use the ssh-agent
of the environment they run in (pulumi-command reads $SSH_AUTH_SOCK itself when no socket is given).
"""

from dataclasses import dataclass
from typing import Optional, Union

import pulumi
import pulumi_docker as docker
from pulumi_command import local, remote

from ollama_gpu.docker_ssh import docker_host_url, docker_ssh_options
from ollama_gpu.settings import HostSettings, Settings
from ollama_gpu.shell import Value, inline_script_command, script_command

HostCommand = Union[remote.Command, local.Command]
LOCAL_DOCKER = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class CommandTarget:
    host: Optional[HostSettings]
    connection: Optional[remote.ConnectionArgs]

    @classmethod
    def for_settings(cls, settings: Settings) -> "CommandTarget":
        host = settings.host
        if host is None:
            return cls(host=None, connection=None)
        key = settings.ssh_private_key
        return cls(
            host=host,
            connection=remote.ConnectionArgs(
                host=host.address,
                port=host.port,
                user=host.user,
                host_key=host.host_key,
                private_key=pulumi.Output.secret(key.get_secret_value()) if key else None,
                # Fail in about a minute on an unreachable VM instead of retrying for ten.
                dial_error_limit=6,
                per_dial_timeout=10,
            ),
        )

    @property
    def needs_sudo(self) -> bool:
        return self.host is not None and self.host.user != "root"

    def docker_provider(self, name: str, opts: pulumi.ResourceOptions) -> docker.Provider:
        if self.host is None:
            return docker.Provider(name, host=LOCAL_DOCKER, opts=opts)
        return docker.Provider(name, host=docker_host_url(self.host), ssh_opts=docker_ssh_options(self.host), opts=opts)

    def command(
        self,
        name: str,
        script: str,
        params: dict[str, Value],
        *,
        opts: pulumi.ResourceOptions,
        privileged: bool = False,
        delete: Optional[tuple[str, dict[str, Value]]] = None,
        triggers: Optional[list] = None,
    ) -> HostCommand:
        """`script` and `delete` name files under scripts/; `privileged` runs them as root."""
        sudo = privileged and self.needs_sudo
        create = script_command(script, params, name, sudo=sudo)
        delete_command = inline_script_command(*delete, f"{name}-delete", sudo=sudo) if delete else None
        if self.connection is None:
            return local.Command(
                name, create=create.line, stdin=create.stdin, delete=delete_command, triggers=triggers,
                add_previous_output_in_env=False, opts=opts,
            )
        return remote.Command(
            name, connection=self.connection, create=create.line, stdin=create.stdin, delete=delete_command,
            triggers=triggers, add_previous_output_in_env=False, opts=opts,
        )
