#!/usr/bin/env bash
# Builds the pinned Ollama's CUDA backend on a CUDA machine, for that machine's GPU architecture
# only (one architecture builds in a few minutes on 16 cores; Ollama's release presets build a
# dozen), and installs it where the server binary looks for backends.
#
#   scripts/gpu-lab/build-cuda.sh SOURCE_DIR PRODUCT_DIR BUILD_DIR
#
# SOURCE_DIR holds Ollama's CMake project (CMakeLists.txt, CMakePresets.json, ml/backend/ggml/ggml);
# PRODUCT_DIR is a tree with bin/ollama and lib/ollama (scripts/dev/build-ollama.sh makes one). The
# backend lands in PRODUCT_DIR/lib/ollama/cuda_v<nvcc major> (and the CPU backends in lib/ollama when
# the product has none), the folder name the server lists as
# "libdirs=ollama,cuda_vNN" when it finds the GPU. The build folder is kept, so a rerun on the same
# machine only reinstalls.
set -euo pipefail

SOURCE_DIR="$(cd "$1" && pwd)"
PRODUCT_DIR="$(cd "$2" && pwd)"
BUILD_DIR="$3"

# "9.0" -> "90": the one architecture to generate code for.
arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '. ')"
[[ "$arch" =~ ^[0-9]+$ ]] || { echo "build-cuda: cannot read the GPU's compute capability" >&2; exit 1; }
cuda_major="$(nvcc --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')"
[[ -n "$cuda_major" ]] || { echo "build-cuda: nvcc not found or unreadable" >&2; exit 1; }
runner_dir="cuda_v$cuda_major"

echo "build-cuda: sm_$arch with CUDA $cuda_major into lib/ollama/$runner_dir" >&2
cmake -S "$SOURCE_DIR" -B "$BUILD_DIR" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -DOLLAMA_RUNNER_DIR="$runner_dir" \
  -DCMAKE_INSTALL_PREFIX="$PRODUCT_DIR" >&2
targets=(ggml-cuda)
components=(CUDA)
# A product without CPU backends (only the Go binary travelled) gets them from the same build.
if ! compgen -G "$PRODUCT_DIR/lib/ollama/libggml-cpu-*.so" >/dev/null; then
  targets+=(ggml-cpu)
  components+=(CPU)
fi
cmake --build "$BUILD_DIR" --target "${targets[@]}" -j "$(nproc)" >&2
for component in "${components[@]}"; do
  cmake --install "$BUILD_DIR" --component "$component" --strip >&2
done
# The install folder names the runner folder for every component; the CPU backends belong one up,
# where the release layout (and the CPU build of scripts/dev/build-ollama.sh) has them.
for library in "$PRODUCT_DIR/lib/ollama/$runner_dir"/libggml-{base,cpu}*; do
  [[ -e "$library" ]] && mv "$library" "$PRODUCT_DIR/lib/ollama/"
done
ls "$PRODUCT_DIR/lib/ollama/$runner_dir/libggml-cuda.so" >/dev/null
echo "$PRODUCT_DIR/lib/ollama/$runner_dir"
