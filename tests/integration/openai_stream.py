"""A streamed chat completion over the OpenAI-compatible API, read as its server-sent events: the
check the gateway and router tests share that a stream arrives in chunks and ends with [DONE]."""

import json

import httpx


def streamed_chat_chunks(client: httpx.Client, model: str, path: str = "/chat/completions") -> list[dict]:
    """POSTs a streamed 8-token chat to `path` of `client`'s base URL; returns the chunks."""
    request = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 8}
    with client.stream("POST", path, json=request) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert len(chunks) > 1 and all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    return chunks
