"""The planner's per-architecture rules against the real Ollama 0.24.0 server: tiny gemma3, gpt-oss,
deepseek2 (MLA) and llama models are loaded CPU-only and the memory lines the server logs are
compared with what the planner predicts for the same file and settings, as Ollama prints them.

The server is the session's native one (native_server.py): flash attention on, q8_0 KV cache
requested. So the cases also pin the settings rules: gemma3, gpt-oss and llama keep q8_0, while
deepseek2 with MLA (key 96 != value 64 dims) has flash attention turned off and an f16 cache.
A second server with OLLAMA_NUM_PARALLEL=2 pins the sliding-window rules for several sequences
(window + 1 cells each, the batch once).
"""

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import ollama
import pytest

from ollama_gpu.planner.gguf_geometry import geometry_from_gguf
from ollama_gpu.planner.placement import place
from ollama_gpu.planner.units import format_ollama
from tests.integration.arch_models import WRITERS
from tests.integration import harness
from tests.integration.native_server import (  # noqa: F401 (native_ollama is a fixture)
    NativeOllama,
    _build_server,
    _server_env,
    _stop,
    _wait_until_answering,
    native_ollama,
)

_LINE = re.compile(r'msg="(model weights|kv cache|compute graph)" device=CPU size="([^"]+)"')


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}/api/generate", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def _logged_after(log_path: Path, offset: int) -> dict[str, str]:
    """The last memory summary the server printed after ``offset``: kind -> size as printed."""
    lines = log_path.read_text(errors="replace")[offset:].splitlines()
    return {match[1]: match[2] for line in lines if (match := _LINE.search(line))}


def _load_and_read(server: NativeOllama, path: Path, num_ctx: int) -> dict[str, str]:
    client = ollama.Client(host=server.url)
    name = f"arch-{path.stem}:test"
    client.create(model=name, files={path.name: client.create_blob(path)})
    offset = server.log_path.stat().st_size
    try:
        _post(server.url, {"model": name, "keep_alive": "1m", "options": {"num_ctx": num_ctx}})
        return _logged_after(server.log_path, offset)
    finally:
        _post(server.url, {"model": name, "keep_alive": 0})
        client.delete(name)


@pytest.mark.parametrize(("family", "num_ctx"), [("gemma3", 4096), ("gptoss", 8192), ("deepseek2-mla", 4096), ("llama", 4096)])
def test_the_server_allocates_what_the_planner_predicts(native_ollama: NativeOllama, tmp_path, family, num_ctx):  # noqa: F811
    path = WRITERS[family](tmp_path / f"{family}.gguf")
    logged = _load_and_read(native_ollama, path, num_ctx)
    predicted = place(geometry_from_gguf(path), gpu_free_vram=None, gpu_overhead=0, num_ctx=num_ctx,
                      kv_cache_type="q8_0", flash_attention=True, num_parallel=1)
    assert logged["kv cache"] == format_ollama(predicted.kv_cpu)
    assert logged["model weights"] == format_ollama(predicted.weights_cpu)
    if family == "deepseek2-mla":
        assert (predicted.flash_attention, predicted.kv_cache_type) == (False, "f16")
    if family == "llama":
        # The llama.cpp runner's estimate puts graphs on GPUs only: no CPU graph line at all.
        assert "compute graph" not in logged and predicted.graph_cpu == 0


@pytest.fixture(scope="module")
def two_sequence_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeOllama]:
    """Its own server: OLLAMA_NUM_PARALLEL=2, f16 KV (no OLLAMA_KV_CACHE_TYPE)."""
    binary = _build_server()
    workdir = tmp_path_factory.mktemp("parallel-ollama")
    port = harness.free_port()
    env = _server_env(port, workdir / "models", num_parallel=2)
    env.pop("OLLAMA_KV_CACHE_TYPE")
    log_path = workdir / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_answering(url, server, log_path)
        yield NativeOllama(url, "", log_path, binary)
    finally:
        _stop(server)


@pytest.mark.parametrize("family", ["gemma3", "gptoss"])
def test_sliding_windows_with_two_sequences(two_sequence_server: NativeOllama, tmp_path, family):
    # gemma3: roundUp(2 x 257 + 512, 256) = 1280 cells on 5 windowed layers, 16384 on the global one:
    # 11.1 MiB. gpt-oss: roundUp(2 x 4096 + 512, 256) = 8704 cells on the even layers: 24.5 MiB.
    path = WRITERS[family](tmp_path / f"{family}.gguf")
    logged = _load_and_read(two_sequence_server, path, 8192)
    predicted = place(geometry_from_gguf(path), gpu_free_vram=None, gpu_overhead=0, num_ctx=8192,
                      kv_cache_type="f16", flash_attention=True, num_parallel=2)
    assert logged["kv cache"] == format_ollama(predicted.kv_cpu)
