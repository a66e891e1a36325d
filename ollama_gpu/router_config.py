"""The router's LiteLLM config, rendered from ollama_gpu/templates/litellm-config.yaml.

Each host is one deployment of the alias at the host's private address, through Ollama's chat API
(`ollama_chat/<alias>`) or, for llama-server, the OpenAI-compatible one (`openai/<alias>` at /v1);
its id is the host's name, so LiteLLM's `x-litellm-model-id` response header names the host that
answered. Every value is written as JSON, which YAML reads as the same scalar, and checked again
here against its grammar, so the file has the template's structure whatever reaches it. Nothing
here imports Pulumi.
"""

import json
import re
from dataclasses import dataclass

from ollama_gpu.gateway_config import api_key_problem
from ollama_gpu.names import ollama_name_problem
from ollama_gpu.template_fill import fill_template

_BACKEND = re.compile(r"http://([0-9.]+|\[[0-9a-fA-F:]+\]):[0-9]{1,5}", re.ASCII)
_HOST_NAME = re.compile(r"[a-z][a-z0-9-]{0,19}", re.ASCII)
ENGINES = ("ollama", "llama-server")
STRATEGIES = ("least-busy", "latency-based-routing", "simple-shuffle", "usage-based-routing")
# A health check that waits longer than this marks the host unhealthy (LiteLLM's default is 60 s).
HEALTH_CHECK_TIMEOUT_SECONDS = 10


# What LiteLLM's OpenAI client sends llama-server as its key: it needs one, and llama-server, run
# without --api-key on a private address only the router reaches, ignores it.
LLAMA_SERVER_KEY = "no-key"


@dataclass(frozen=True)
class Backend:
    host: str
    url: str
    engine: str = "ollama"


@dataclass(frozen=True)
class RouterConfig:
    alias: str
    backends: tuple[Backend, ...]
    master_key: str
    routing_strategy: str = "least-busy"
    num_retries: int = 2
    timeout_seconds: int = 600
    allowed_fails: int = 0
    cooldown_seconds: int = 30
    health_check_interval_seconds: int = 30


def deployment(alias: str, backend: Backend, timeout_seconds: int) -> dict:
    if backend.engine == "llama-server":
        params = {"model": f"openai/{alias}", "api_base": f"{backend.url}/v1", "api_key": LLAMA_SERVER_KEY}
    else:
        params = {"model": f"ollama_chat/{alias}", "api_base": backend.url}
    return {
        "model_name": alias,
        "litellm_params": params | {"timeout": timeout_seconds},
        "model_info": {"id": backend.host, "health_check_timeout": HEALTH_CHECK_TIMEOUT_SECONDS},
    }


def render_router_config(config: RouterConfig) -> str:
    problems = [
        ollama_name_problem(config.alias),
        None if config.backends else "no backends",
        None if config.master_key.startswith("sk-") and not api_key_problem(config.master_key[3:]) else "master key is not sk-KEY",
        None if config.routing_strategy in STRATEGIES else "unknown routing strategy",
        *(None if _BACKEND.fullmatch(b.url) and _HOST_NAME.fullmatch(b.host) and b.engine in ENGINES
          else f"backend {b.host!r} is not NAME at http://IP:PORT of a known engine" for b in config.backends),
        None if len({b.host for b in config.backends}) == len(config.backends) else "two backends share a name",
    ]
    numbers = (config.num_retries, config.timeout_seconds, config.allowed_fails, config.cooldown_seconds,
               config.health_check_interval_seconds)
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        problems.append("a number is not a non-negative integer")
    if any(problems):
        raise ValueError("; ".join(p for p in problems if p))
    return fill_template("litellm-config.yaml", {
        "MODEL_LIST": json.dumps([deployment(config.alias, b, config.timeout_seconds) for b in config.backends]),
        "ROUTING_STRATEGY": json.dumps(config.routing_strategy),
        "NUM_RETRIES": json.dumps(config.num_retries),
        "TIMEOUT_SECONDS": json.dumps(config.timeout_seconds),
        "ALLOWED_FAILS": json.dumps(config.allowed_fails),
        "COOLDOWN_SECONDS": json.dumps(config.cooldown_seconds),
        "MASTER_KEY": json.dumps(config.master_key),
        "HEALTH_CHECK_INTERVAL_SECONDS": json.dumps(config.health_check_interval_seconds),
    })

