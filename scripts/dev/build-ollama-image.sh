#!/usr/bin/env bash
# Builds ollama-gpu-test/ollama:<OLLAMA_VERSION from pins.env>, the stand-in for the official
# ollama/ollama image (see ollama-standin.Dockerfile), from an Ollama install prefix: OLLAMA_DIR/bin/ollama
# and optionally OLLAMA_DIR/lib/ollama/, as build-ollama.sh makes it. Prints the image tag on stdout.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=harness-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness-common.sh"

(($# == 1)) || die "usage: $0 OLLAMA_DIR"
ollama_dir=$1
[[ -x $ollama_dir/bin/ollama ]] || die "$ollama_dir/bin/ollama is missing or not executable"

tag=ollama-gpu-test/ollama:$(pinned_ollama_version)
build_on_base_image "$tag" "$HARNESS_DEV_DIR/ollama-standin.Dockerfile" "$ollama_dir"
echo "$tag"
