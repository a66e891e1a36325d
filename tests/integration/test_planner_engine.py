"""The planner's per-architecture rules against the real Ollama 0.24.0 server: tiny gemma3, gpt-oss,
deepseek2 (MLA) and llama models are loaded CPU-only and the memory lines the server logs are
compared with what the planner predicts for the same file and settings, as Ollama prints them.

The server is the session's native one (native_server.py): flash attention on, q8_0 KV cache
requested. So the cases also pin the settings rules: gemma3, gpt-oss and llama keep q8_0, while
deepseek2 with MLA (key 96 != value 64 dims) has flash attention turned off and an f16 cache.
"""

import re
import urllib.request
import json
from pathlib import Path

import ollama
import pytest

from ollama_gpu.planner.gguf_geometry import geometry_from_gguf
from ollama_gpu.planner.placement import place
from ollama_gpu.planner.units import format_ollama
from tests.integration.arch_models import WRITERS
from tests.integration.native_server import NativeOllama, native_ollama  # noqa: F401 (the fixture)

_LINE = re.compile(r'msg="(model weights|kv cache|compute graph)" device=CPU size="([^"]+)"')


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}/api/generate", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def _logged_after(log_path: Path, offset: int) -> dict[str, str]:
    """The last memory summary the server printed after ``offset``: kind -> size as printed."""
    lines = log_path.read_text(errors="replace")[offset:].splitlines()
    return {match[1]: match[2] for line in lines if (match := _LINE.search(line))}


@pytest.mark.parametrize(("family", "num_ctx"), [("gemma3", 4096), ("gptoss", 8192), ("deepseek2-mla", 4096), ("llama", 4096)])
def test_the_server_allocates_what_the_planner_predicts(native_ollama: NativeOllama, tmp_path, family, num_ctx):  # noqa: F811
    path = WRITERS[family](tmp_path / f"{family}.gguf")
    client = ollama.Client(host=native_ollama.url)
    name = f"arch-{family}:test"
    client.create(model=name, files={path.name: client.create_blob(path)})
    offset = native_ollama.log_path.stat().st_size
    try:
        _post(native_ollama.url, {"model": name, "keep_alive": "1m", "options": {"num_ctx": num_ctx}})
        logged = _logged_after(native_ollama.log_path, offset)
    finally:
        _post(native_ollama.url, {"model": name, "keep_alive": 0})
        client.delete(name)

    predicted = place(geometry_from_gguf(path), gpu_free_vram=None, gpu_overhead=0, num_ctx=num_ctx,
                      kv_cache_type="q8_0", flash_attention=True, num_parallel=1)
    assert logged["kv cache"] == format_ollama(predicted.kv_cpu)
    assert logged["model weights"] == format_ollama(predicted.weights_cpu)
    if family == "deepseek2-mla":
        assert (predicted.flash_attention, predicted.kv_cache_type) == (False, "f16")
