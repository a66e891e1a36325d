#!/usr/bin/env bash
# Builds ollama-gpu-test/gpu-host:bookworm, the Debian host the host-prep scripts are tested
# against over SSH (see test-host.Dockerfile), and prints its tag on stdout.
# Its packages come from the Debian mirror at build time.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=harness-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness-common.sh"

# Host networking lets apt in the build reach the mirror exactly as this machine does.
build_on_base_image "$HARNESS_TEST_HOST_IMAGE" "$HARNESS_DEV_DIR/test-host.Dockerfile" \
  "$HARNESS_DEV_DIR/test-host" --network host
echo "$HARNESS_TEST_HOST_IMAGE"
