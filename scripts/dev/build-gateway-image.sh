#!/usr/bin/env bash
# Builds ollama-gpu-test/caddy:<CADDY_VERSION from pins.env>, the stand-in for the official caddy
# image the gateway runs (see gateway-standin.Dockerfile), and prints its tag on stdout.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=harness-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness-common.sh"

version=$(sed -n 's/^CADDY_VERSION=//p' "$HARNESS_REPO_ROOT/pins.env")
[[ -n $version ]] || die "CADDY_VERSION missing from pins.env"
tag=ollama-gpu-test/caddy:$version
build_on_base_image "$tag" "$HARNESS_DEV_DIR/gateway-standin.Dockerfile" \
  "$HARNESS_DEV_DIR/gateway-standin" --network host
echo "$tag"
