#!/usr/bin/env bash
# Builds a CPU-only Ollama server of the version pinned in pins.env from the Go module proxy, with no
# other network access, and prints the binary's path on its last stdout line.
#
# Product (self-contained, a Docker build can COPY the whole directory):
#   ${OLLAMA_GPU_CACHE:-<repo>/.cache}/ollama-<ver>/bin/ollama     the server, one static-enough ELF
#   ${OLLAMA_GPU_CACHE:-<repo>/.cache}/ollama-<ver>/lib/ollama/    empty: see "runtime libraries"
#   ${OLLAMA_GPU_CACHE:-<repo>/.cache}/bin/ollama-<ver>            symlink to the server (printed)
# The binary needs only glibc, libstdc++, libgcc_s and libm at run time (all in any Debian/Ubuntu
# base image). In an image, COPY ollama-<ver>/ to /usr/ and run /usr/bin/ollama serve.
#
# What worked for 0.24.0, and why:
# - The module zip from the Go proxy omits llama/llama.cpp/vendor/ (Go's module zip rules drop any
#   directory named "vendor"), yet the cgo flags of llama/, common/ and tools/mtmd/ add
#   -I.../llama.cpp/vendor and the sources include exactly three of its headers:
#     nlohmann/json.hpp + nlohmann/json_fwd.hpp  <- Debian nlohmann-json3-dev (3.11.2; llama.cpp
#                                                   vendors 3.12, the API it uses is the same)
#     stb/stb_image.h                            <- Debian libstb-dev
#     miniaudio/miniaudio.h                      <- PyPI sdist of "miniaudio" (Debian has no
#                                                   package; its sdist carries miniaudio 0.11.25,
#                                                   llama.cpp vendors a 0.11.x release too)
#   They are copied into vendor/ so the tree does not depend on the system include order.
# - The CPU ggml backend is compiled into the binary by cgo (ggml.go defines GGML_USE_CPU and the
#   ggml-cpu package is linked in), so plain `go build .` gives a working CPU server; no CMake step.
#   The CMake "CPU" preset of the official image only adds per-microarchitecture libggml-cpu-*.so
#   variants (faster, optional). The server still scans <exe>/../lib/ollama for GPU backends, which
#   is why the product keeps that (empty) directory: an image may drop CUDA libraries there.
# - The version string is set the way the upstream release scripts do, with -X on
#   version.Version; server.mode=release silences gin's debug-mode banner.
# - cgo compiles with the module's own flags only (no -march=native) so the binary runs on any
#   x86-64 host, like the official one.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OLLAMA_VERSION="$(sed -n 's/^OLLAMA_VERSION=//p' "$REPO_ROOT/pins.env")"
[[ -n "$OLLAMA_VERSION" ]] || { echo "OLLAMA_VERSION missing from pins.env" >&2; exit 1; }

CACHE_DIR="${OLLAMA_GPU_CACHE:-$REPO_ROOT/.cache}"
SRC_DIR="$CACHE_DIR/ollama-src-$OLLAMA_VERSION"
PRODUCT_DIR="$CACHE_DIR/ollama-$OLLAMA_VERSION"
BINARY_LINK="$CACHE_DIR/bin/ollama-$OLLAMA_VERSION"
MINIAUDIO_SDIST_VERSION=1.71

export GOFLAGS=-mod=mod CGO_ENABLED=1

log() { echo "build-ollama: $*" >&2; }

# `ollama --version` asks a server first; pointing it at a closed port makes it report only its own
# version ("Warning: client version is X"), so a server running on this machine cannot confuse it.
reports_pinned_version() {
  [[ -x "$1" ]] && OLLAMA_HOST=127.0.0.1:9 "$1" --version 2>/dev/null | grep -qx ".*version is $OLLAMA_VERSION"
}

apt_install() {
  log "installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

install_debian_headers() {
  local missing=()
  [[ -f /usr/include/nlohmann/json.hpp ]] || missing+=(nlohmann-json3-dev)
  [[ -f /usr/include/stb/stb_image.h ]] || missing+=(libstb-dev)
  if ((${#missing[@]})); then apt_install "${missing[@]}"; fi
}

fetch_miniaudio_header() {
  local downloads="$CACHE_DIR/sdists"
  local sdist="$downloads/miniaudio-$MINIAUDIO_SDIST_VERSION.tar.gz"
  if [[ ! -f "$sdist" ]]; then
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
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
  install_debian_headers
  cp /usr/include/nlohmann/json.hpp /usr/include/nlohmann/json_fwd.hpp "$vendor/nlohmann/"
  cp /usr/include/stb/stb_image.h "$vendor/stb/"
  fetch_miniaudio_header "$vendor/miniaudio/miniaudio.h"
}

build_server() {
  local ldflags="-s -w -X=github.com/ollama/ollama/version.Version=$OLLAMA_VERSION"
  ldflags+=" -X=github.com/ollama/ollama/server.mode=release"
  log "go build (CPU backend via cgo; takes a long while on few cores)"
  (cd "$SRC_DIR" && go build -trimpath -ldflags="$ldflags" -o "$PRODUCT_DIR/bin/ollama" .)
  mkdir -p "$PRODUCT_DIR/lib/ollama" "$(dirname "$BINARY_LINK")"
  ln -sfn "../ollama-$OLLAMA_VERSION/bin/ollama" "$BINARY_LINK"
}

if reports_pinned_version "$BINARY_LINK"; then
  log "ollama $OLLAMA_VERSION already built"
else
  prepare_sources
  build_server
  reports_pinned_version "$BINARY_LINK" || { echo "built binary does not report $OLLAMA_VERSION" >&2; exit 1; }
fi
echo "$BINARY_LINK"
