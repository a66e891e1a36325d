"""`scripts/smoke`: after `pulumi up`, is the server answering, with the tuned alias, at what speed?

    scripts/smoke [--stack a10] [--url URL] [--model ALIAS] [--timeout S] [--json]

Defaults come from the stack file: the URL is the client endpoint (for a loopback bind, the local end
of the SSH tunnel, whose command the error prints when nothing answers), the model is the alias, the
timeout is the client timeout the stack was planned for. It reports the server version, the alias's
parameters and details, one short generation's prefill and decode rates and load time, and whether
the alias is loaded (before the generation: did the deploy's warm-up and keep-alive hold?).
Either engine: Ollama through its native API, llama-server (which has no Ollama API) through its
OpenAI-compatible /v1 API and /props; which one answers is detected.
An unreachable server, a missing alias or a bad stack prints one line and exits non-zero.

The module also holds what scripts/bench shares with it: resolving the target and talking to it.
"""

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

import httpx
import ollama

from ollama_gpu import generation_stats, server_api
from ollama_gpu.config_loader import DEPLOY_AGENT_SOCKET, load_settings, stack_file, values_from_stack_file
from ollama_gpu.endpoints import client_endpoint, tunnel_command
from ollama_gpu.errors import ConfigError, UserError
from ollama_gpu.server_api import ServerApi
from ollama_gpu.settings import Settings

DEFAULT_STACK = "a10"
SMOKE_QUESTION = "In one short sentence: why is the sky blue?"
# Enough tokens for a decode rate, few enough that a thinking model's long answer does not matter.
SMOKE_NUM_PREDICT = 32


class ServerUnreachable(UserError):
    """Nothing answers at the URL, or it answered too slowly."""


@dataclass(frozen=True)
class Target:
    """The server and model a smoke test or benchmark talks to, and the stack they belong to."""

    url: str
    model: str
    timeout_s: float
    settings: Settings
    unreachable_hint: str

    @property
    def is_stack_alias(self) -> bool:
        return self.model == self.settings.model.alias


def load_stack(stack: str) -> Settings:
    agent_socket = os.environ.get("SSH_AUTH_SOCK") or DEPLOY_AGENT_SOCKET
    return load_settings(stack, values_from_stack_file(stack_file(stack)), agent_socket=agent_socket)


def add_target_arguments(parser: argparse.ArgumentParser, timeout_help: str) -> None:
    parser.add_argument("--stack", default=DEFAULT_STACK, help=f"stack whose Pulumi.<stack>.yaml gives the defaults (default {DEFAULT_STACK})")
    parser.add_argument("--url", help="the server's URL, Ollama or llama-server (default: the stack's client endpoint)")
    parser.add_argument("--model", help="model or alias to test (default: the stack's alias)")
    parser.add_argument("--timeout", type=float, help=timeout_help)
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def resolve_target(args: argparse.Namespace, default_timeout_s: Optional[float] = None) -> Target:
    settings = load_stack(args.stack)
    url = (args.url or client_endpoint(settings)).rstrip("/")
    # A remote server bound to loopback is the far end of the tunnel client_endpoint points at.
    through_tunnel = not args.url and settings.is_remote and ipaddress.ip_address(settings.server.bind_address).is_loopback
    hint = f"Open the SSH tunnel first: {tunnel_command(settings)}" if through_tunnel else "Is the server running?"
    timeout = args.timeout or default_timeout_s or settings.client.timeout_seconds
    return Target(url, args.model or settings.model.alias, timeout, settings, hint)


def connect(target: Target) -> ServerApi:
    with talking_to(target):
        return server_api.connect(target.url, target.timeout_s)


@contextlib.contextmanager
def talking_to(target: Target) -> Iterator[None]:
    """Turns transport failures into one line that says what to do. The ollama client reports a
    refused connection as ConnectionError but lets httpx's other errors (timeouts) through."""
    try:
        yield
    except (ConnectionError, httpx.ConnectError):
        raise ServerUnreachable(f"no server answers at {target.url}. {target.unreachable_hint}") from None
    except httpx.HTTPStatusError as error:
        raise ServerUnreachable(
            f"{target.url} answers, but not as its API should (HTTP {error.response.status_code} for {error.request.url.path})"
        ) from None
    except httpx.TimeoutException:
        raise ServerUnreachable(
            f"{target.url} did not answer within {target.timeout_s:g} s (raise --timeout if the model is still loading)"
        ) from None
    except httpx.TransportError as error:
        raise ServerUnreachable(f"talking to {target.url} failed: {error}. {target.unreachable_hint}") from None


def smoke(target: Target) -> dict[str, Any]:
    api = connect(target)
    with talking_to(target):
        version = api.version()
        model = api.describe(target.model, target.url)
        loaded_before = api.loaded(target.model) is not None
        # A fresh opening each time: a prompt the server has cached would be "prefilled" at a
        # rate no real conversation sees.
        prompt = f"{secrets.token_hex(4)}: {SMOKE_QUESTION}"
        response = api.generate(target.model, prompt, SMOKE_NUM_PREDICT)
        loaded = api.loaded(target.model)
    return {
        "url": target.url,
        "server": api.name,
        "version": version,
        "model": target.model,
        **model,
        "generation": generation_stats.generation_figures(response),
        "loaded_before_generation": loaded_before,
        "loaded": loaded,
    }


def format_report(report: dict[str, Any]) -> str:
    number = generation_stats.format_number
    details = report["details"]
    generation = report["generation"]
    parameters = " ".join(f"{name}={json.dumps(value)}" for name, value in sorted(report["parameters"].items()))
    loaded = report["loaded"]
    if loaded and loaded["size"] is None:
        residency = f"yes: context {loaded['context_length']} per slot (llama-server loads its model at start and keeps it)"
    elif loaded:
        on_gpu = loaded["size_vram"] / loaded["size"] if loaded["size"] else 0
        residency = (
            f"yes: context {loaded['context_length']}, {loaded['size'] / 2**20:,.0f} MiB, {on_gpu:.0%} on GPU"
            f"{'' if report['loaded_before_generation'] else ' (it was not loaded before this test)'}"
        )
    else:
        residency = "no: it unloaded right after answering (keep-alive is not holding it)"
    lines = [
        ("server", f"{report['server']} {report['version']} at {report['url']}"),
        ("model", f"{report['model']} ({details.get('family', '?')}, {details.get('parameter_size', '?')} parameters, {details.get('quantization_level', '?')})"),
        ("parameters", parameters or "(none: the base model's defaults)"),
        ("prefill", f"{number(generation['prefill_tokens_per_s'])} tokens/s ({generation['prompt_tokens']} prompt tokens)"),
        ("decode", f"{number(generation['decode_tokens_per_s'])} tokens/s ({generation['generated_tokens']} tokens)"),
        ("load", f"{number(generation['load_s'])} s" if generation["load_s"] is not None else "– (not reported)"),
        ("loaded", residency),
    ]
    return "\n".join(f"{label:<11}{text}" for label, text in lines)


def run_cli(program: str, produce: Callable[[], dict[str, Any]], render: Callable[[dict[str, Any]], str], as_json: bool) -> int:
    """Prints the report, or one line saying what went wrong: exit 2 for a bad stack (as the other
    CLIs do), 1 for a server that is unreachable, lacks the model or refuses a request."""
    try:
        report = produce()
    except ConfigError as error:
        print(f"{program}: {error}", file=sys.stderr)
        return 2
    except (UserError, ollama.ResponseError) as error:
        print(f"{program}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2) if as_json else render(report))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/smoke", description=__doc__.split("\n\n")[0], epilog=server_api.ENGINES_HELP)
    add_target_arguments(parser, "seconds to wait for an answer (default: the stack's client.timeoutSeconds)")
    args = parser.parse_args(argv)
    return run_cli("smoke", lambda: smoke(resolve_target(args)), format_report, args.json)


if __name__ == "__main__":
    sys.exit(main())
