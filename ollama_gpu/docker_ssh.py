"""How the Docker provider reaches the VM's engine: it runs `ssh ... docker system dial-stdio` on
the operator's machine with these options.

The options are stored in the stack's state, and `pulumi destroy` reuses them without running the
program, from whatever checkout or CI runner it is started. So they name no machine-local file:
the pinned host key travels inside them (ssh's KnownHostsCommand prints it; `%H` is the name ssh
looks up, "[host]:port" for another port), and the identity is whatever plain `ssh` uses there —
the ssh-agent of $SSH_AUTH_SOCK or ~/.ssh keys. Needs OpenSSH 8.5 or newer on the operator's machine.
"""

from ollama_gpu.settings import HostSettings

PRINT_COMMAND = "/bin/echo"


def docker_ssh_options(host: HostSettings) -> list[str]:
    return [
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"KnownHostsCommand={PRINT_COMMAND} %H {host.host_key}",
        # A deploy never waits for a password or passphrase prompt nobody sees.
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=15",
    ]


def docker_host_url(host: HostSettings) -> str:
    # An IPv6 literal needs brackets in a URL, or its colons read as the port.
    address = f"[{host.address}]" if ":" in host.address else host.address
    return f"ssh://{host.user}@{address}:{host.port}"
