#!/usr/bin/env bash
# Builds ollama-gpu-test/registry:bookworm, the model and image registry stand-in (see
# registry-standin.Dockerfile), and prints its tag on stdout.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=harness-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness-common.sh"

build_on_base_image "$HARNESS_REGISTRY_IMAGE" "$HARNESS_DEV_DIR/registry-standin.Dockerfile" \
  "$HARNESS_DEV_DIR/registry-standin" --network host
echo "$HARNESS_REGISTRY_IMAGE"
