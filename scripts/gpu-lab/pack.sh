#!/usr/bin/env bash
# Packs what the GPU lab needs from this machine into LAB_DIR/carry (default <repo>/.lab/carry):
# the CPU build of the pinned Ollama (scripts/dev/build-ollama.sh) and Ollama's CMake project for
# the CUDA backend. Both are xz-compressed to stay small enough to copy to the GPU machine.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OLLAMA_VERSION="$(sed -n 's/^OLLAMA_VERSION=//p' "$REPO_ROOT/pins.env")"
CACHE_DIR="${OLLAMA_GPU_CACHE:-$REPO_ROOT/.cache}"
LAB_DIR="${LAB_DIR:-$REPO_ROOT/.lab}"
carry="$LAB_DIR/carry"
mkdir -p "$carry"

"$REPO_ROOT/scripts/dev/build-ollama.sh" >/dev/null
tar -cf - -C "$CACHE_DIR" "ollama-$OLLAMA_VERSION/bin" "ollama-$OLLAMA_VERSION/lib" |
  xz -T0 -6 >"$carry/ollama-$OLLAMA_VERSION.tar.xz"
tar -cf - -C "$CACHE_DIR/ollama-src-$OLLAMA_VERSION" CMakeLists.txt CMakePresets.json ml/backend/ggml/ggml |
  xz -T0 -6 >"$carry/ollama-cmake.tar.xz"
du -h "$carry"/*
