#!/usr/bin/env bash
# Captures `llama-server --help` of the build pinned in pins.env (built by build-llama-server.sh)
# into ollama_gpu/llama_server_help/b<LLAMA_CPP_BUILD>.txt, or into OUTPUT when given, and prints
# the file's path. ollama_gpu/llama_server_flags.py reads the committed capture; an integration
# test captures again into a scratch file and compares. Rerun this after changing the pin.
# The help text depends only on the build: defaults are printed as compiled in, before the
# environment or the machine is looked at, and the environment is emptied anyway.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_NUMBER="$(sed -n 's/^LLAMA_CPP_BUILD=//p' "$REPO_ROOT/pins.env")"
[[ -n "$BUILD_NUMBER" ]] || { echo "LLAMA_CPP_BUILD missing from pins.env" >&2; exit 1; }
output="${1:-$REPO_ROOT/ollama_gpu/llama_server_help/b$BUILD_NUMBER.txt}"

binary="$("$REPO_ROOT/scripts/dev/build-llama-server.sh" | tail -n 1)"
mkdir -p "$(dirname "$output")"
# Written whole or not at all: a failed run must not leave a truncated capture behind.
env -i "$binary" --help > "$output.partial"
mv "$output.partial" "$output"
echo "$output"
