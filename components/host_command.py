"""Runs the project's .sh files on the target: over SSH on a VM, or on this machine for `local`.

Both kinds of stack get the same rendered scripts; only the transport differs, so a script that
passes the integration tests locally is the one that runs on the VM.
"""

from dataclasses import dataclass
from typing import Optional, Union

import pulumi
from pulumi_command import local, remote

from ollama_gpu.settings import Settings
from ollama_gpu.shell import Value, script_command

HostCommand = Union[remote.Command, local.Command]


@dataclass(frozen=True)
class CommandTarget:
    connection: Optional[remote.ConnectionArgs]
    needs_sudo: bool

    @classmethod
    def for_settings(cls, settings: Settings) -> "CommandTarget":
        host = settings.host
        if host is None:
            return cls(connection=None, needs_sudo=False)
        key = settings.ssh_private_key
        return cls(
            connection=remote.ConnectionArgs(
                host=host.address,
                port=host.port,
                user=host.user,
                host_key=host.host_key,
                private_key=pulumi.Output.secret(key.get_secret_value()) if key else None,
                agent_socket_path=host.ssh_agent_socket,
                # Fail in about a minute on an unreachable VM instead of retrying for ten.
                dial_error_limit=6,
                per_dial_timeout=10,
            ),
            needs_sudo=host.user != "root",
        )

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
        delete_command = script_command(*delete, f"{name}-delete", sudo=sudo) if delete else None
        if self.connection is None:
            return local.Command(
                name, create=create, delete=delete_command, triggers=triggers,
                add_previous_output_in_env=False, opts=opts,
            )
        return remote.Command(
            name, connection=self.connection, create=create, delete=delete_command,
            triggers=triggers, add_previous_output_in_env=False, opts=opts,
        )
