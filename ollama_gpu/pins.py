"""Versions the whole project agrees on, read from pins.env so shell and Python share one source."""

from pathlib import Path

PINS_FILE = Path(__file__).resolve().parent.parent / "pins.env"


def read_pins() -> dict[str, str]:
    pins = {}
    for line in PINS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key.strip()] = value.strip()
    return pins


OLLAMA_VERSION = read_pins()["OLLAMA_VERSION"]
OLLAMA_IMAGE = f"ollama/ollama:{OLLAMA_VERSION}"
CADDY_IMAGE = f"caddy:{read_pins()['CADDY_VERSION']}"
# llama.cpp's official CUDA server image of the pinned build (server.engine: llama-server).
LLAMA_SERVER_IMAGE = f"ghcr.io/ggml-org/llama.cpp:server-cuda-b{read_pins()['LLAMA_CPP_BUILD']}"
