#!/usr/bin/env bash
# Builds llama.cpp's llama-server with its CUDA backend on a CUDA machine, for that machine's GPU
# architecture only, from the source scripts/gpu-lab/pack.sh carries (the pinned build vendored in
# the llama-cpp-python sdist, pins.env).
#
#   scripts/gpu-lab/build-llama-cuda.sh SOURCE_DIR BUILD_DIR
#
# Prints the path of the built llama-server. The official server image builds every architecture
# with the CPU backend's runtime-selected variants; the lab builds one architecture and the host's
# own CPU variant (GGML_NATIVE), which is what the runtime selection picks on that host. The build
# folder is kept, so a rerun on the same machine only relinks.
set -euo pipefail

SOURCE_DIR="$(cd "$1" && pwd)"
BUILD_DIR="$2"
PINS="$(dirname "${BASH_SOURCE[0]}")/../../pins.env"
BUILD_NUMBER="$(sed -n 's/^LLAMA_CPP_BUILD=//p' "$PINS")"
# Given explicitly: CMake would otherwise ask git, which finds this repository around the source.
BUILD_COMMIT="$(sed -n 's/^LLAMA_CPP_COMMIT=//p' "$PINS" | cut -c1-9)"

arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '. ')"
[[ "$arch" =~ ^[0-9]+$ ]] || { echo "build-llama-cuda: cannot read the GPU's compute capability" >&2; exit 1; }
command -v nvcc >/dev/null || { echo "build-llama-cuda: nvcc not found" >&2; exit 1; }

echo "build-llama-cuda: b$BUILD_NUMBER for sm_$arch" >&2
cmake -S "$SOURCE_DIR" -B "$BUILD_DIR" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DGGML_CUDA=ON \
  -DGGML_NATIVE=ON \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_NUMBER="$BUILD_NUMBER" -DLLAMA_BUILD_COMMIT="$BUILD_COMMIT" >&2
cmake --build "$BUILD_DIR" --target llama-server -j "$(nproc)" >&2
"$BUILD_DIR/bin/llama-server" --version >&2
echo "$BUILD_DIR/bin/llama-server"
