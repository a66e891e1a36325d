#!/usr/bin/env bash
# Builds a CPU-only llama.cpp `llama-server` of the build pinned in pins.env, using only PyPI and
# Debian packages, and prints the server binary's path on its last stdout line.
#
# Product, a flat directory laid out like the official server image's /app (a Docker build can COPY
# the whole directory to /app/ and run /app/llama-server):
#   ${OLLAMA_GPU_CACHE:-<repo>/.cache}/llama-server-b<build>/llama-server         the server
#   ${OLLAMA_GPU_CACHE:-<repo>/.cache}/llama-server-b<build>/lib*.so              llama, mtmd, ggml
#   ${OLLAMA_GPU_CACHE:-<repo>/.cache}/llama-server-b<build>/libggml-cpu.so       CPU backend
#   ${OLLAMA_GPU_CACHE:-<repo>/.cache}/bin/llama-server-b<build>   symlink to llama-server (printed)
# The libraries are found through RUNPATH $ORIGIN, the CPU backend in the executable's directory.
#
# What worked for b11312, and why:
# - llama.cpp's source comes from PyPI: the llama-cpp-python sdist vendors the whole llama.cpp tree
#   (ggml and the third-party headers included) at one upstream commit, so the CMake build needs no
#   network. The sdist's sha256 is pinned; the download is checked before anything is unpacked.
# - Configured like the official images (.devops/cuda.Dockerfile and cpu.Dockerfile) with
#   GGML_NATIVE=OFF and GGML_BACKEND_DL=ON: the CPU backend is a module (libggml-cpu.so) that ggml
#   loads from the executable's directory at start-up, as the CUDA one is in the official image.
#   Unlike them, not GGML_CPU_ALL_VARIANTS: ggml depends on every variant, so all fourteen x86 ones
#   would be compiled, which would double the build on two cores. GGML_NATIVE=OFF alone builds one
#   backend for AVX2/FMA/F16C/BMI2 (ggml's defaults then), not for this machine's CPU, so the
#   product runs on any x86-64 machine with AVX2 (Intel Haswell and AMD Zen or later: every CI
#   runner and cloud VM of the last decade).
# - Only the llama-server target is built (its libraries come along); tests, examples, the unified
#   `llama` binary and the other tools are not. The embedded web UI is left out: building it needs
#   npm and the UI's own package tree, and the prebuilt one is downloaded from Hugging Face; with
#   both off, tools/ui embeds an empty asset table and the server's API is unchanged.
# - No OpenSSL: it only serves the server's own HTTPS and model downloads, which the program does not
#   use (the gateway terminates TLS), so the stand-in image needs no libssl.
# - RUNPATH $ORIGIN instead of CMake's default, the build directory's absolute path followed by an
#   empty entry (the working directory): the official image finds its libraries only because its
#   WORKDIR is /app; this product works from anywhere, so the cache can keep it alone.
# - The tree has no .git, so the build number and commit that `llama-server --version` reports are
#   passed in (LLAMA_BUILD_NUMBER/LLAMA_BUILD_COMMIT), as the release build derives them from git.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

pin() {
  local value
  value="$(sed -n "s/^$1=//p" "$REPO_ROOT/pins.env")"
  [[ -n "$value" ]] || { echo "$1 missing from pins.env" >&2; exit 1; }
  printf '%s\n' "$value"
}

BUILD_NUMBER="$(pin LLAMA_CPP_BUILD)"
COMMIT="$(pin LLAMA_CPP_COMMIT)"
SDIST_VERSION="$(pin LLAMA_CPP_PYTHON_VERSION)"
SDIST_SHA256="$(pin LLAMA_CPP_PYTHON_SDIST_SHA256)"
# The short form upstream's git-derived build info uses (git rev-parse --short on the release tree).
SHORT_COMMIT="${COMMIT:0:9}"

CACHE_DIR="${OLLAMA_GPU_CACHE:-$REPO_ROOT/.cache}"
SDIST="$CACHE_DIR/sdists/llama_cpp_python-$SDIST_VERSION.tar.gz"
SRC_DIR="$CACHE_DIR/llama-cpp-src-b$BUILD_NUMBER"
BUILD_DIR="$CACHE_DIR/llama-cpp-build-b$BUILD_NUMBER"
PRODUCT_DIR="$CACHE_DIR/llama-server-b$BUILD_NUMBER"
# Built here, then moved into place whole, so a failed build never leaves a half product and
# servers already running from the old one keep working.
STAGE_DIR="$PRODUCT_DIR.partial"
BINARY_LINK="$CACHE_DIR/bin/llama-server-b$BUILD_NUMBER"
JOBS="${LLAMA_BUILD_JOBS:-2}"

log() { echo "build-llama-server: $*" >&2; }

product_is_complete() {
  [[ -x "$BINARY_LINK" && -e "$PRODUCT_DIR/libggml-cpu.so" ]] || return 1
  "$BINARY_LINK" --version 2>&1 | grep -qx "version: .* (build $BUILD_NUMBER, commit $SHORT_COMMIT)"
}

install_build_tools() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v ninja >/dev/null || missing+=(ninja-build)
  command -v g++ >/dev/null || missing+=(g++)
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
}

sdist_is_verified() {
  [[ -f "$SDIST" ]] && echo "$SDIST_SHA256  $SDIST" | sha256sum --check --status
}

fetch_sdist() {
  sdist_is_verified && return
  log "downloading llama-cpp-python $SDIST_VERSION sdist"
  rm -f "$SDIST"
  python3 -m pip download --quiet --no-deps --no-binary :all: \
    "llama-cpp-python==$SDIST_VERSION" -d "$(dirname "$SDIST")" >&2
  sdist_is_verified || { echo "$SDIST does not have the pinned sha256 $SDIST_SHA256" >&2; exit 1; }
}

unpack_sources() {
  log "unpacking vendor/llama.cpp from the sdist"
  rm -rf "$SRC_DIR"
  mkdir -p "$SRC_DIR"
  tar -xzf "$SDIST" -C "$SRC_DIR" --strip-components=3 "llama_cpp_python-$SDIST_VERSION/vendor/llama.cpp"
  # A git submodule link into llama-cpp-python's repository, which the sdist does not carry.
  rm -f "$SRC_DIR/.git"
}

build_server() {
  log "cmake configure"
  rm -rf "$BUILD_DIR"
  # CMake asks git for the commit; the ceiling keeps git from finding a repository the cache sits
  # in (the default cache is inside this project's clone) and reporting that one's commit.
  GIT_CEILING_DIRECTORIES="$(dirname "$SRC_DIR")" cmake -S "$SRC_DIR" -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON -DCMAKE_INSTALL_RPATH="\$ORIGIN" \
    -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_NUMBER="$BUILD_NUMBER" -DLLAMA_BUILD_COMMIT="$SHORT_COMMIT" >&2
  # The CPU backend module comes with the target: ggml depends on every backend it was configured with.
  log "building llama-server with $JOBS jobs"
  cmake --build "$BUILD_DIR" --parallel "$JOBS" --target llama-server >&2

  rm -rf "$STAGE_DIR"
  mkdir -p "$STAGE_DIR"
  cp "$BUILD_DIR/bin/llama-server" "$STAGE_DIR/"
  # -P keeps the soname links (libllama.so.0 -> libllama.so.0.5.0), as the official image does.
  find "$BUILD_DIR/bin" -maxdepth 1 -name '*.so*' -exec cp -P {} "$STAGE_DIR/" \;
  find "$STAGE_DIR" -type f -exec strip --strip-unneeded {} +
  rm -rf "$BUILD_DIR"
}

mkdir -p "$CACHE_DIR/sdists"
# Test runs and image builds may call this at the same time: one builds, the others wait and reuse.
exec 9>"$CACHE_DIR/.build-llama-server-b$BUILD_NUMBER.lock"
flock 9

if product_is_complete; then
  log "llama-server b$BUILD_NUMBER already built"
else
  install_build_tools
  fetch_sdist
  unpack_sources
  build_server
  rm -rf "$PRODUCT_DIR"
  mv "$STAGE_DIR" "$PRODUCT_DIR"
  mkdir -p "$(dirname "$BINARY_LINK")"
  ln -sfn "../llama-server-b$BUILD_NUMBER/llama-server" "$BINARY_LINK"
  product_is_complete || { echo "built llama-server is incomplete or not b$BUILD_NUMBER" >&2; exit 1; }
fi
echo "$BINARY_LINK"
