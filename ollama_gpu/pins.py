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
LITELLM_VERSION = read_pins()["LITELLM_VERSION"]
# LiteLLM's official proxy image, tagged main-v<version> for each PyPI release.
LITELLM_IMAGE = f"ghcr.io/berriai/litellm:main-v{LITELLM_VERSION}"
# The official llama.cpp server image of the pinned build (llama.cpp's docker workflow tags the CUDA
# server image server-cuda-b<build>); scripts/dev/build-llama-server-image.sh makes a CPU stand-in.
LLAMA_CPP_BUILD = read_pins()["LLAMA_CPP_BUILD"]
LLAMA_SERVER_IMAGE = f"ghcr.io/ggml-org/llama.cpp:server-cuda-b{LLAMA_CPP_BUILD}"
