"""The two engines' APIs as scripts/smoke and scripts/bench use them: which server answers, its
version, the model's settings, whether it is loaded, and one generation with its server-side
timings, in Ollama's field names (prompt_eval_count, eval_duration, ... in nanoseconds) so that
ollama_gpu.generation_stats reads both alike.

Ollama is spoken to through its native API (the `ollama` client). llama-server has no Ollama API:
it is spoken to through its OpenAI-compatible one (/v1/models, /v1/chat/completions, which it
extends with `timings`) and its /props. Which engine answers is found out by asking (/api/version
answers only on Ollama, /props only on llama-server), so --url works without the stack's engine.
"""

import json
from collections.abc import Iterator
from typing import Any, Optional, Protocol

import httpx
import ollama

from ollama_gpu import generation_stats
from ollama_gpu.errors import UserError

MILLISECONDS_NS = 1_000_000
# For the --help of scripts/smoke and scripts/bench.
ENGINES_HELP = (
    "Works against either engine (server.engine): Ollama through its native API; llama-server, which has no "
    "Ollama API, through its OpenAI-compatible /v1 API and /props. The engine that answers is detected."
)


class ModelMissing(UserError):
    """The server answers but does not have the model asked for."""


class RequestRefused(UserError):
    """The server refused a request (its own reason follows)."""


class NeitherEngine(UserError):
    """Something answers at the URL, but neither as Ollama nor as llama-server."""


class ServerApi(Protocol):
    name: str

    def version(self) -> str: ...

    def describe(self, model: str, url: str) -> dict[str, Any]: ...

    def loaded(self, model: str) -> Optional[dict[str, Any]]: ...

    def generate(self, model: str, prompt: str, num_predict: int) -> dict[str, Any]: ...

    def stream(self, model: str, prompt: str, options: dict[str, int]) -> Iterator[tuple[bool, Optional[dict[str, Any]]]]:
        """(whether this chunk carries generated text, the final figures or None) per chunk."""
        ...


class OllamaApi:
    name = "Ollama"

    def __init__(self, url: str, timeout_s: float):
        self.client = ollama.Client(host=url, timeout=timeout_s)

    def version(self) -> str:
        # ollama 0.6 has no method for /api/version; its httpx client already carries the host and timeout.
        response = self.client._client.get("/api/version")
        response.raise_for_status()
        return response.json()["version"]

    def describe(self, model: str, url: str) -> dict[str, Any]:
        try:
            shown = self.client.show(model)
        except ollama.ResponseError as error:
            if error.status_code != 404:
                raise
            available = sorted(entry.model for entry in self.client.list().models if entry.model)
            raise ModelMissing(
                f"model '{model}' is not on the server at {url}; it has: {', '.join(available) or 'no models'}"
                " (`pulumi up` creates the alias; if this is another Ollama on the tunnel's local port, stop it"
                " — the tunnel command fails when its port is taken)"
            ) from None
        return {
            "parameters": generation_stats.parse_parameters(shown.parameters),
            "details": shown.details.model_dump(exclude_none=True) if shown.details else {},
            "capabilities": list(shown.capabilities or []),
        }

    def loaded(self, model: str) -> Optional[dict[str, Any]]:
        """The /api/ps entry for MODEL, or None when it is not in memory."""
        for entry in self.client.ps().models:
            if model in (entry.model, entry.name):
                return {
                    "size": int(entry.size or 0),
                    "size_vram": int(entry.size_vram or 0),
                    "context_length": entry.context_length,
                    "expires_at": entry.expires_at.isoformat() if entry.expires_at else None,
                }
        return None

    def generate(self, model: str, prompt: str, num_predict: int) -> dict[str, Any]:
        return self.client.generate(model=model, prompt=prompt, options={"num_predict": num_predict}).model_dump()

    def stream(self, model: str, prompt: str, options: dict[str, int]) -> Iterator[tuple[bool, Optional[dict[str, Any]]]]:
        for chunk in self.client.generate(model=model, prompt=prompt, options=options, stream=True):
            yield bool(chunk.response or chunk.thinking), chunk.model_dump() if chunk.done else None


class LlamaServerApi:
    name = "llama-server"

    def __init__(self, url: str, timeout_s: float):
        # A connection per request: llama-server may close a kept-alive connection after a streamed
        # answer just as the next request is sent on it ("Server disconnected without sending a
        # response", seen with scripts/bench against b11312).
        self.client = httpx.Client(base_url=url, timeout=timeout_s, headers={"Connection": "close"})

    def props(self) -> dict[str, Any]:
        response = self.client.get("/props")
        response.raise_for_status()
        return response.json()

    def version(self) -> str:
        return str(self.props().get("build_info", "?"))

    def describe(self, model: str, url: str) -> dict[str, Any]:
        response = self.client.get("/v1/models")
        response.raise_for_status()
        served = {name for entry in response.json().get("data", []) for name in [entry.get("id"), *entry.get("aliases", [])] if name}
        if model not in served:
            raise ModelMissing(
                f"model '{model}' is not served at {url}; llama-server serves: {', '.join(sorted(served)) or 'nothing'}"
                " (llama-server serves one model, under the stack's alias)"
            )
        settings = self.props().get("default_generation_settings", {})
        sampling = settings.get("params", {})
        parameters = {"num_ctx": settings.get("n_ctx")} | {
            ours: sampling[theirs] for ours, theirs in
            (("temperature", "temperature"), ("top_k", "top_k"), ("top_p", "top_p"), ("min_p", "min_p"))
            if theirs in sampling
        }
        return {"parameters": parameters, "details": {"format": "gguf"}, "capabilities": ["completion"]}

    def loaded(self, model: str) -> Optional[dict[str, Any]]:
        """llama-server loads its one model before it answers and never unloads it."""
        settings = self.props().get("default_generation_settings", {})
        return {"size": None, "size_vram": None, "context_length": settings.get("n_ctx"), "expires_at": None}

    def generate(self, model: str, prompt: str, num_predict: int) -> dict[str, Any]:
        response = self.client.post("/v1/chat/completions", json=self._request(model, prompt, num_predict, stream=False))
        self._raise_for_refusal(response)
        return ollama_figures(response.json().get("timings", {}))

    def stream(self, model: str, prompt: str, options: dict[str, int]) -> Iterator[tuple[bool, Optional[dict[str, Any]]]]:
        # The server's context is fixed at its start: only the answer's length is a per-request option.
        body = self._request(model, prompt, options["num_predict"], stream=True)
        with self.client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code >= 400:
                response.read()
                self._raise_for_refusal(response)
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line.removeprefix("data: "))
                delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
                text = bool(delta.get("content") or delta.get("reasoning_content"))
                yield text, ollama_figures(chunk["timings"]) if "timings" in chunk else None

    @staticmethod
    def _request(model: str, prompt: str, num_predict: int, *, stream: bool) -> dict[str, Any]:
        return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": num_predict, "stream": stream}

    @staticmethod
    def _raise_for_refusal(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            reason = response.json().get("error", {}).get("message", response.text)
        except ValueError:
            reason = response.text
        raise RequestRefused(f"llama-server refused the request (HTTP {response.status_code}): {reason}")


def ollama_figures(timings: dict[str, Any]) -> dict[str, Any]:
    """llama-server's `timings` (milliseconds; prompt_n counts only the prompt tokens it computed,
    cache_n those it reused) in the fields of an Ollama generate response (nanoseconds)."""

    def nanoseconds(milliseconds: Any) -> Optional[int]:
        return None if milliseconds is None else round(float(milliseconds) * MILLISECONDS_NS)

    return {
        "prompt_eval_count": timings.get("prompt_n"),
        "prompt_eval_duration": nanoseconds(timings.get("prompt_ms")),
        "eval_count": timings.get("predicted_n"),
        "eval_duration": nanoseconds(timings.get("predicted_ms")),
        "load_duration": None,
        "total_duration": None,
    }


def connect(url: str, timeout_s: float) -> ServerApi:
    """The API of whichever engine answers at URL. Transport failures propagate (the caller's
    `talking_to` turns them into one line)."""
    with httpx.Client(base_url=url, timeout=timeout_s) as probe:
        if probe.get("/api/version").status_code == 200:
            return OllamaApi(url, timeout_s)
        if probe.get("/props").status_code == 200:
            return LlamaServerApi(url, timeout_s)
    raise NeitherEngine(f"{url} answers, but neither as Ollama (/api/version) nor as llama-server (/props)")
