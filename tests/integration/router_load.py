"""Concurrent chats through a fleet's router, each outcome with the host that answered (LiteLLM's
`x-litellm-model-id` response header): the load tests/integration/test_router.py and the two-VM
e2e put on the router, so both count failures and hosts the same way."""

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import httpx


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    status: int
    host: str  # the deployment id LiteLLM answered with, "" when it failed
    error: str = ""  # the router's answer to a failed request, for the report


def _chat(client: httpx.Client, alias: str, index: int) -> Outcome:
    started = time.monotonic()
    try:
        response = client.post("/chat/completions", json={
            "model": alias, "messages": [{"role": "user", "content": f"request {index}"}], "max_tokens": 8,
        })
        status, host, error = response.status_code, response.headers.get("x-litellm-model-id", ""), response.text[:300]
    except httpx.TransportError as failure:
        status, host, error = 0, "", str(failure)
    return Outcome(started, time.monotonic(), status, host if status == 200 else "", "" if status == 200 else error)


def router_load(url: str, key: str, alias: str, count: int, concurrency: int,
                on_done: Optional[Callable[[int], None]] = None) -> list[Outcome]:
    """`count` chats, `concurrency` at a time, in order of submission; `on_done(n)` after the n-th
    result is in (a test freezes a host from there)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120) as client, \
            ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(_chat, client, alias, index) for index in range(count)]
        outcomes = []
        for future in futures:
            outcomes.append(future.result())
            if on_done:
                on_done(len(outcomes))
    return outcomes
