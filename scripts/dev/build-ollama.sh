#!/usr/bin/env bash
# Builds a CPU-only Ollama server of the version pinned in pins.env, using only the Go module proxy,
# Debian packages and PyPI, and prints the server binary's path on its last stdout line.
#
# Product, a self-contained tree laid out like the official image's /usr (a Docker build can COPY
# the whole directory to /usr/ and run `ollama serve`):
#   ${OLLAMA_GPU_CACHE:-<repo>/.cache}/ollama-<ver>/bin/ollama                 the server
#   ${OLLAMA_GPU_CACHE:-<repo>/.cache}/ollama-<ver>/lib/ollama/libggml-*.so    CPU backends
#   ${OLLAMA_GPU_CACHE:-<repo>/.cache}/bin/ollama-<ver>   symlink to bin/ollama (the printed path)
# The binary finds its backends at <real exe dir>/../lib/ollama (symlinks resolved). Run-time needs:
# glibc >= 2.34 and libstdc++ with GLIBCXX_3.4.30 (Debian bookworm, Ubuntu 22.04 and later).
#
# What worked for 0.24.0, and why:
# - The module zip from the Go proxy omits llama/llama.cpp/vendor/ (Go's module zip rules drop any
#   directory named "vendor"), yet the cgo flags of llama/, common/ and tools/mtmd/ add
#   -I.../llama.cpp/vendor and the sources include exactly three of its headers:
#     nlohmann/json.hpp + json_fwd.hpp  <- Debian nlohmann-json3-dev (3.11.2; llama.cpp vendors
#                                          3.12, the API it uses is the same)
#     stb/stb_image.h                   <- Debian libstb-dev
#     miniaudio/miniaudio.h             <- PyPI sdist of "miniaudio" (no Debian package; the sdist
#                                          carries miniaudio 0.11.25, llama.cpp vendors a 0.11.x)
#   They are copied into vendor/ so the tree does not depend on the system include order.
# - `go build .` alone gives a working CPU server: ggml.go defines GGML_USE_CPU and links the ggml-cpu
#   package in. But cgo compiles it for baseline x86-64 (no AVX), so, like the official image, the
#   script also builds the CMake "CPU" preset: libggml-base.so plus one libggml-cpu-<variant>.so per
#   x86 level (x64 ... icelake, alderlake); at start-up ggml loads the best one the CPU supports
#   ("load_backend: loaded CPU backend from .../libggml-cpu-icelake.so") and the built-in one stays
#   as a fallback. That preset needs nothing from the network. It made a 12K-token prefill of the
#   tiny test model about 2.5x faster; it costs about 2.5 minutes of build on 2 cores.
# - The version string is set the way the upstream release scripts do, with -X on
#   version.Version; server.mode=release silences gin's debug-mode banner.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OLLAMA_VERSION="$(sed -n 's/^OLLAMA_VERSION=//p' "$REPO_ROOT/pins.env")"
[[ -n "$OLLAMA_VERSION" ]] || { echo "OLLAMA_VERSION missing from pins.env" >&2; exit 1; }

CACHE_DIR="${OLLAMA_GPU_CACHE:-$REPO_ROOT/.cache}"
SRC_DIR="$CACHE_DIR/ollama-src-$OLLAMA_VERSION"
PRODUCT_DIR="$CACHE_DIR/ollama-$OLLAMA_VERSION"
# Built here, then moved into place whole, so a failed build never leaves a half product and
# servers already running from the old one keep working.
STAGE_DIR="$PRODUCT_DIR.partial"
BINARY_LINK="$CACHE_DIR/bin/ollama-$OLLAMA_VERSION"
MINIAUDIO_SDIST_VERSION=1.71

export GOFLAGS=-mod=mod CGO_ENABLED=1

log() { echo "build-ollama: $*" >&2; }

# `ollama --version` asks a server first; pointing it at a closed port makes it report only its own
# version ("Warning: client version is X"), so a server running on this machine cannot confuse it.
product_is_complete() {
  [[ -x "$BINARY_LINK" && -e "$PRODUCT_DIR/lib/ollama/libggml-base.so" ]] &&
    OLLAMA_HOST=127.0.0.1:9 "$BINARY_LINK" --version 2>/dev/null | grep -qx ".*version is $OLLAMA_VERSION"
}

apt_install() {
  log "installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

install_build_tools() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v ninja >/dev/null || missing+=(ninja-build)
  command -v g++ >/dev/null || missing+=(g++)
  [[ -f /usr/include/nlohmann/json.hpp ]] || missing+=(nlohmann-json3-dev)
  [[ -f /usr/include/stb/stb_image.h ]] || missing+=(libstb-dev)
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

fetch_miniaudio_header() {
  local downloads="$CACHE_DIR/sdists"
  local sdist="$downloads/miniaudio-$MINIAUDIO_SDIST_VERSION.tar.gz"
  if [[ ! -f "$sdist" ]]; then
    log "downloading miniaudio $MINIAUDIO_SDIST_VERSION sdist"
    python3 -m pip download --quiet --no-deps --no-binary :all: \
      "miniaudio==$MINIAUDIO_SDIST_VERSION" -d "$downloads" >&2
  fi
  tar -xzf "$sdist" -O "miniaudio-$MINIAUDIO_SDIST_VERSION/miniaudio/miniaudio.h" > "$1"
}

prepare_sources() {
  log "downloading github.com/ollama/ollama@v$OLLAMA_VERSION"
  local module_dir
  module_dir="$(go mod download -json "github.com/ollama/ollama@v$OLLAMA_VERSION" |
    sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$module_dir" ]] || { echo "go mod download gave no module directory" >&2; exit 1; }

  rm -rf "$SRC_DIR"
  mkdir -p "$(dirname "$SRC_DIR")"
  cp -r "$module_dir" "$SRC_DIR"
  # The module cache is read-only; the build tree must be writable for the headers and go.sum.
  chmod -R u+w "$SRC_DIR"

  local vendor="$SRC_DIR/llama/llama.cpp/vendor"
  mkdir -p "$vendor/nlohmann" "$vendor/stb" "$vendor/miniaudio"
  cp /usr/include/nlohmann/json.hpp /usr/include/nlohmann/json_fwd.hpp "$vendor/nlohmann/"
  cp /usr/include/stb/stb_image.h "$vendor/stb/"
  fetch_miniaudio_header "$vendor/miniaudio/miniaudio.h"
}

build_server() {
  local ldflags="-s -w -X=github.com/ollama/ollama/version.Version=$OLLAMA_VERSION"
  ldflags+=" -X=github.com/ollama/ollama/server.mode=release"
  log "go build (cgo compiles llama.cpp and ggml: several minutes on 2 cores)"
  rm -rf "$STAGE_DIR"
  (cd "$SRC_DIR" && go build -trimpath -ldflags="$ldflags" -o "$STAGE_DIR/bin/ollama" .)
}

build_cpu_backends() {
  log "cmake CPU preset (libggml-cpu-* variants)"
  (
    cd "$SRC_DIR"
    # The install directory is fixed at configure time (OLLAMA_INSTALL_DIR is derived from
    # CMAKE_INSTALL_PREFIX there), so `cmake --install --prefix` would not move it.
    CMAKE_GENERATOR=Ninja cmake --preset CPU -DCMAKE_INSTALL_PREFIX="$STAGE_DIR" >&2
    cmake --build --preset CPU >&2
    cmake --install build --component CPU --strip >&2
  )
}

mkdir -p "$CACHE_DIR"
# Test runs and image builds may call this at the same time: one builds, the others wait and reuse.
exec 9>"$CACHE_DIR/.build-ollama-$OLLAMA_VERSION.lock"
flock 9

if product_is_complete; then
  log "ollama $OLLAMA_VERSION already built"
else
  install_build_tools
  prepare_sources
  build_server
  build_cpu_backends
  rm -rf "$PRODUCT_DIR"
  mv "$STAGE_DIR" "$PRODUCT_DIR"
  mkdir -p "$(dirname "$BINARY_LINK")"
  ln -sfn "../ollama-$OLLAMA_VERSION/bin/ollama" "$BINARY_LINK"
  product_is_complete || { echo "built server is incomplete or not $OLLAMA_VERSION" >&2; exit 1; }
fi
echo "$BINARY_LINK"
