#!/usr/bin/env bash
# Packs what the GPU lab needs from this machine into LAB_DIR/carry (default <repo>/.lab/carry):
# the CPU build of the pinned Ollama (scripts/dev/build-ollama.sh), Ollama's CMake project for its
# CUDA backend, and llama.cpp's source at the pinned build (from the llama-cpp-python sdist on PyPI,
# checked against pins.env) without what a llama-server build never reads (models, docs, tests,
# the web UI's sources, other GPU backends). All xz-compressed to stay small enough to copy to the
# GPU machine.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
pin() { sed -n "s/^$1=//p" "$REPO_ROOT/pins.env"; }
OLLAMA_VERSION="$(pin OLLAMA_VERSION)"
SDIST_VERSION="$(pin LLAMA_CPP_PYTHON_VERSION)"
SDIST_SHA256="$(pin LLAMA_CPP_PYTHON_SDIST_SHA256)"
CACHE_DIR="${OLLAMA_GPU_CACHE:-$REPO_ROOT/.cache}"
LAB_DIR="${LAB_DIR:-$REPO_ROOT/.lab}"
PYTHON="${PYTHON:-python3}"
carry="$LAB_DIR/carry"
mkdir -p "$carry"

"$REPO_ROOT/scripts/dev/build-ollama.sh" >/dev/null
tar -cf - -C "$CACHE_DIR" "ollama-$OLLAMA_VERSION/bin" "ollama-$OLLAMA_VERSION/lib" |
  xz -T0 -6 >"$carry/ollama-$OLLAMA_VERSION.tar.xz"
tar -cf - -C "$CACHE_DIR/ollama-src-$OLLAMA_VERSION" CMakeLists.txt CMakePresets.json ml/backend/ggml/ggml |
  xz -T0 -6 >"$carry/ollama-cmake.tar.xz"

sdist="$CACHE_DIR/sdists/llama_cpp_python-$SDIST_VERSION.tar.gz"  # where build-llama-server.sh keeps it
if [[ ! -f "$sdist" ]]; then
  "$PYTHON" -m pip download --quiet --no-deps --no-binary=:all: "llama-cpp-python==$SDIST_VERSION" -d "$CACHE_DIR/sdists"
fi
echo "$SDIST_SHA256  $sdist" | sha256sum --check --quiet
unpacked="$(mktemp -d)"
trap 'rm -rf "$unpacked"' EXIT
tar -xzf "$sdist" -C "$unpacked" "llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp"
source_dir="$unpacked/llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp"
excluded=(models docs tests benches examples pocs media gguf-py conversion .git .github
  tools/ui/src tools/ui/static tools/ui/tests)
for backend in sycl vulkan opencl metal hexagon et webgpu cann zdnn openvino; do
  excluded+=("ggml/src/ggml-$backend")
done
tar -cf - -C "$source_dir" "${excluded[@]/#/--exclude=./}" . | xz -T0 -6 >"$carry/llama-cpp-src.tar.xz"
du -h "$carry"/*
