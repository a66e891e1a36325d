#!/usr/bin/env bash
# Builds Pebble, Let's Encrypt's ACME test server, at PEBBLE_VERSION (pins.env) from the Go module
# proxy, for the gateway's ACME test. Prints the product directory on its last stdout line:
#   ${OLLAMA_GPU_CACHE:-<repo>/.cache}/pebble-<version>/
#     bin/pebble                the server
#     certs/                    its own HTTPS certificate (localhost) and the test CA that signed it
# The certificates are the module's test fixtures (test/certs), which Pebble's README says to use.
set -euo pipefail
# shellcheck source=scripts/dev/harness-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness-common.sh"

version=$(sed -n 's/^PEBBLE_VERSION=//p' "$HARNESS_REPO_ROOT/pins.env")
[[ -n $version ]] || die "PEBBLE_VERSION missing from pins.env"
product=$HARNESS_CACHE/pebble-$version
if [[ -x $product/bin/pebble && -f $product/certs/pebble.minica.pem ]]; then
  log "pebble $version already built"
  echo "$product"
  exit 0
fi
stage=$product.partial
rm -rf "$stage"
mkdir -p "$stage/bin"
module=github.com/letsencrypt/pebble/v2
GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$stage/bin" \
  go install "$module/cmd/pebble@$version" >&2
source_dir=$(GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' "$module@$version")
cp -r "$source_dir/test/certs" "$stage/certs"
chmod -R u+w "$stage/certs"
rm -rf "$product"
mv "$stage" "$product"
log "pebble $version built"
echo "$product"
