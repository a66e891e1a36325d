#!/usr/bin/env bash
# Builds the stand-in for the official llama.cpp server image (see llama-server-standin.Dockerfile)
# from the product directory of build-llama-server.sh (LLAMA_SERVER_DIR/llama-server and its
# libraries), tagged locally with the official name ghcr.io/ggml-org/llama.cpp:server-cuda-b<build>
# of LLAMA_CPP_BUILD in pins.env, so what runs it names the image exactly as a stack does.
# Prints the image tag on stdout.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=harness-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness-common.sh"

(($# == 1)) || die "usage: $0 LLAMA_SERVER_DIR"
server_dir=$1
[[ -x $server_dir/llama-server ]] || die "$server_dir/llama-server is missing or not executable"

build=$(sed -n 's/^LLAMA_CPP_BUILD=//p' "$HARNESS_REPO_ROOT/pins.env")
[[ -n $build ]] || die "LLAMA_CPP_BUILD missing from pins.env"
tag=ghcr.io/ggml-org/llama.cpp:server-cuda-b$build
# --network host: apt-get fetches curl from the machine's Debian mirror.
build_on_base_image "$tag" "$HARNESS_DEV_DIR/llama-server-standin.Dockerfile" "$server_dir" \
  --network host --build-arg "LLAMA_CPP_BUILD=$build"
echo "$tag"
