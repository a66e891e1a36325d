"""The two streaming generation APIs the load benchmark speaks, reduced to what it measures.

- `ollama`: Ollama's native POST /api/generate, newline-delimited JSON, the final object
  `done: true` with the server's counts (eval_count, prompt_eval_count); a failure mid-stream is
  an object with `error`.
- `openai`: POST /v1/chat/completions with `stream: true` and `stream_options.include_usage`, as
  Ollama's /v1, llama-server and LiteLLM's proxy serve it: server-sent events `data: {json}`, a
  last chunk with `usage` and no choices, then `data: [DONE]`. Thinking arrives in the delta as
  `reasoning` (Ollama) or `reasoning_content` (llama-server, LiteLLM), and counts as generated text:
  a thinking model's answer starts there.

Nothing here does I/O: each API builds its request and parses one line of the response body into a
Chunk, so recorded streams test it.
"""

import json
from dataclasses import dataclass
from typing import Any, Optional, Protocol


@dataclass(frozen=True)
class Chunk:
    """What one streamed line says: whether it carries generated text, whether the answer is
    complete, the server's token counts (usually only on the last chunk), or an error."""

    generates: bool = False
    done: bool = False
    generated_tokens: Optional[int] = None
    prompt_tokens: Optional[int] = None
    error: Optional[str] = None


class StreamingApi(Protocol):
    name: str
    generate_path: str
    models_path: str

    def request_body(self, model: str, prompt: str, num_predict: int) -> dict[str, Any]: ...

    def parse_line(self, line: str) -> Optional[Chunk]: ...

    def lists_model(self, models: Any, model: str) -> bool: ...


def _json_object(text: str) -> Optional[dict[str, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _error_text(error: Any) -> str:
    """Ollama sends a string; OpenAI-style servers an object with a message."""
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _count(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class OllamaGenerate:
    name = "ollama"
    generate_path = "/api/generate"
    models_path = "/api/tags"

    def request_body(self, model: str, prompt: str, num_predict: int) -> dict[str, Any]:
        # No num_ctx: a value other than the loaded one would make the server reload the model.
        return {"model": model, "prompt": prompt, "stream": True, "options": {"num_predict": num_predict}}

    def parse_line(self, line: str) -> Optional[Chunk]:
        if not line.strip():
            return None
        message = _json_object(line)
        if message is None:
            return Chunk(error=f"not a JSON line: {line[:80]!r}")
        if "error" in message:
            return Chunk(error=_error_text(message["error"]))
        return Chunk(
            generates=bool(message.get("response") or message.get("thinking")),
            done=message.get("done") is True,
            generated_tokens=_count(message.get("eval_count")),
            prompt_tokens=_count(message.get("prompt_eval_count")),
        )

    def lists_model(self, models: Any, model: str) -> bool:
        entries = models.get("models") if isinstance(models, dict) else None
        return any(model in (entry.get("name"), entry.get("model")) for entry in entries or () if isinstance(entry, dict))


class OpenAIChat:
    name = "openai"
    generate_path = "/v1/chat/completions"
    models_path = "/v1/models"

    def request_body(self, model: str, prompt: str, num_predict: int) -> dict[str, Any]:
        return {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "max_tokens": num_predict,
            "stream_options": {"include_usage": True},
        }

    def parse_line(self, line: str) -> Optional[Chunk]:
        # SSE: only `data:` fields matter here; comments (`:`), event names and blank lines do not.
        if not line.startswith("data:"):
            return None
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return Chunk(done=True)
        message = _json_object(data)
        if message is None:
            return Chunk(error=f"not a JSON event: {data[:80]!r}")
        if "error" in message:
            return Chunk(error=_error_text(message["error"]))
        usage = message.get("usage") if isinstance(message.get("usage"), dict) else {}
        choices = message.get("choices") if isinstance(message.get("choices"), list) else []
        deltas = [choice.get("delta") or {} for choice in choices if isinstance(choice, dict)]
        generates = any(
            isinstance(delta, dict) and (delta.get("content") or delta.get("reasoning") or delta.get("reasoning_content"))
            for delta in deltas
        )
        return Chunk(
            generates=bool(generates),
            generated_tokens=_count(usage.get("completion_tokens")),
            prompt_tokens=_count(usage.get("prompt_tokens")),
        )

    def lists_model(self, models: Any, model: str) -> bool:
        entries = models.get("data") if isinstance(models, dict) else None
        return any(entry.get("id") == model for entry in entries or () if isinstance(entry, dict))


APIS: dict[str, StreamingApi] = {api.name: api for api in (OllamaGenerate(), OpenAIChat())}
