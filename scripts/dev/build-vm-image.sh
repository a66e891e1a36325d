#!/usr/bin/env bash
# Builds ollama-gpu-test/vm:bookworm, the fresh-VM stand-in of the end-to-end tests (see
# vm-standin.Dockerfile), and prints its tag on stdout.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=harness-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness-common.sh"

build_on_base_image "$HARNESS_VM_IMAGE" "$HARNESS_DEV_DIR/vm-standin.Dockerfile" \
  "$HARNESS_DEV_DIR/vm-standin" --network host
echo "$HARNESS_VM_IMAGE"
