#!/usr/bin/env bash
# Builds a real Pulumi engine offline — the CLI, the Python language host and the command and docker
# providers at the versions pinned in pins.env — using only the Go module proxy and the provider
# sources in ../shared/pulumi-engine/sources (next to the repository; PULUMI_ENGINE_SOURCES
# overrides). Prints the product directory on its last stdout line.
#
# Product (everything keyed by the pinned versions, so a version bump builds a new one beside it):
#   ${OLLAMA_GPU_CACHE:-<repo>/.cache}/pulumi-engine-<cli>-command-<ver>-docker-<ver>/
#     bin/pulumi, bin/pulumi-language-python, bin/pulumi-language-python-exec
#     home/plugins/resource-{command,docker}-v<ver>/   installed plugins; use as PULUMI_HOME
#       (or point a PULUMI_HOME's plugins/ at it) and the engine never tries to download them.
#
# On a machine with internet an installed `pulumi` (which downloads its own plugins) is the engine:
# callers look for one on PATH first and run this script only when there is none.
#
# What the Go proxy will and will not serve, and the tricks that follow from it:
# - `go install .../pkg/v3/cmd/pulumi@v` refuses a module with replace lines, so the CLI is built
#   from a small wrapper module that requires pkg/v3 and sdk/v3 and repeats pkg's one third-party
#   replace (atotto/clipboard).
# - The Python language host's module is refused; its main.go comes from the sources folder and is
#   built in a module of its own name whose requirements are upstream's, with pkg/sdk at the pinned
#   version. Its exec shim (a Python script) ships inside the sdk/v3 module zip and must sit next
#   to it.
# - pulumi-command (v1.2.1) and pulumi-docker are refused too and come from the sources folder. The
#   docker provider replaces the terraform provider with ../upstream: that is the module the proxy
#   serves, copied out of the read-only module cache, with the provider's two patches applied.
# - Version strings come from -X ldflags; the docker provider embeds schema-embed.json, which its
#   generate.go would write: schema.json with "version" set, compact.
# - The docker provider's source is commit 237b7899 (no release tag); pins.env says why it carries
#   the 5.1.1 label.
# The Go module and build caches stay where `go env` puts them, so a rebuild on a warm machine (or
# after a version bump) takes about a minute instead of the cold ~30 (measured on 2 busy cores).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SOURCES_DIR="${PULUMI_ENGINE_SOURCES:-$REPO_ROOT/../shared/pulumi-engine/sources}"

pin() {
  local value
  value="$(sed -n "s/^$1=//p" "$REPO_ROOT/pins.env")"
  [[ -n "$value" ]] || { echo "$1 missing from pins.env" >&2; exit 1; }
  printf '%s\n' "$value"
}
CLI_VERSION="$(pin PULUMI_CLI_VERSION)"
COMMAND_VERSION="$(pin PULUMI_COMMAND_VERSION)"
DOCKER_VERSION="$(pin PULUMI_DOCKER_VERSION)"
UPSTREAM_MODULE="$(pin TERRAFORM_PROVIDER_DOCKER_MODULE)"

CACHE_DIR="${OLLAMA_GPU_CACHE:-$REPO_ROOT/.cache}"
PRODUCT_NAME="pulumi-engine-$CLI_VERSION-command-$COMMAND_VERSION-docker-$DOCKER_VERSION"
PRODUCT_DIR="$CACHE_DIR/$PRODUCT_NAME"
# Built here, then moved into place whole, so a failed build never leaves a half engine.
STAGE_DIR="$PRODUCT_DIR.partial"
WORK_DIR="$CACHE_DIR/pulumi-engine-work"

PULUMI_MODULE=github.com/pulumi/pulumi
CLIPBOARD_REPLACE="github.com/atotto/clipboard=github.com/tgummerer/clipboard@v0.0.0-20241001131231-d02d263e614e"
# -buildvcs=false: the work folder may sit inside this git checkout (default cache), whose state
# must not leak into the binaries. GOTOOLCHAIN=local: never download another Go.
export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0

log() { echo "build-pulumi-engine: $*" >&2; }
die() { echo "build-pulumi-engine: $*" >&2; exit 1; }

go_build() {
  local output="$1" ldflags="$2" package="$3"
  go build -trimpath -ldflags="-s -w $ldflags" -o "$output" "$package"
}

module_dir() {
  local dir
  dir="$(go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$dir" ]] || die "go mod download $1 gave no module directory"
  printf '%s\n' "$dir"
}

# Plugins are checked as files: `pulumi plugin ls` would write a log under the product's home.
product_is_complete() {
  local dir="$1"
  [[ -x "$dir/bin/pulumi-language-python" && -x "$dir/bin/pulumi-language-python-exec" ]] &&
    [[ -x "$dir/home/plugins/resource-command-v$COMMAND_VERSION/pulumi-resource-command" ]] &&
    [[ -x "$dir/home/plugins/resource-docker-v$DOCKER_VERSION/pulumi-resource-docker" ]] &&
    [[ "$(PULUMI_SKIP_UPDATE_CHECK=true "$dir/bin/pulumi" version 2>/dev/null)" == "v$CLI_VERSION" ]]
}

build_cli() {
  log "pulumi CLI v$CLI_VERSION (wrapper module)"
  local dir="$WORK_DIR/cli"
  mkdir -p "$dir"
  (
    cd "$dir"
    go mod init ollama-gpu.invalid/pulumi-cli >/dev/null 2>&1
    go mod edit -replace "$CLIPBOARD_REPLACE"
    go get "$PULUMI_MODULE/pkg/v3@v$CLI_VERSION" "$PULUMI_MODULE/sdk/v3@v$CLI_VERSION" >&2
    go_build "$STAGE_DIR/bin/pulumi" "-X $PULUMI_MODULE/sdk/v3/go/common/version.Version=v$CLI_VERSION" \
      "$PULUMI_MODULE/pkg/v3/cmd/pulumi"
  )
}

build_language_host() {
  log "pulumi-language-python (sources/pulumi-language-python against pkg/sdk v$CLI_VERSION)"
  local dir="$WORK_DIR/pulumi-language-python"
  mkdir -p "$dir"
  cp "$SOURCES_DIR/pulumi-language-python/main.go" "$dir/"
  cp "$SOURCES_DIR/pulumi-language-python/go.mod.upstream" "$dir/go.mod"
  (
    cd "$dir"
    # Upstream's go.mod points pkg and sdk at its own checkout; here they come from the proxy.
    go mod edit -dropreplace "$PULUMI_MODULE/pkg/v3" -dropreplace "$PULUMI_MODULE/sdk/v3" \
      -require "$PULUMI_MODULE/pkg/v3@v$CLI_VERSION" -require "$PULUMI_MODULE/sdk/v3@v$CLI_VERSION"
    go_build "$STAGE_DIR/bin/pulumi-language-python" \
      "-X $PULUMI_MODULE/sdk/v3/go/common/version.Version=v$CLI_VERSION" .
  )
  local sdk_dir
  sdk_dir="$(module_dir "$PULUMI_MODULE/sdk/v3@v$CLI_VERSION")"
  install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$STAGE_DIR/bin/"
}

build_command_provider() {
  log "pulumi-resource-command v$COMMAND_VERSION (sources/pulumi-command)"
  local dir="$WORK_DIR/pulumi-command"
  cp -r "$SOURCES_DIR/pulumi-command" "$dir"
  (
    cd "$dir/provider"
    go_build "$WORK_DIR/providers/pulumi-resource-command" \
      "-X github.com/pulumi/pulumi-command/provider/pkg/version.Version=$COMMAND_VERSION" \
      ./cmd/pulumi-resource-command
  )
}

build_docker_provider() {
  log "pulumi-resource-docker v$DOCKER_VERSION (sources/pulumi-docker, upstream $UPSTREAM_MODULE)"
  local dir="$WORK_DIR/pulumi-docker"
  cp -r "$SOURCES_DIR/pulumi-docker" "$dir"
  cp -r "$(module_dir "$UPSTREAM_MODULE")" "$dir/upstream"
  # The module cache is read-only; the patches and go.sum need a writable tree.
  chmod -R u+w "$dir/upstream"
  local patch
  for patch in "$dir"/patches/*.patch; do
    patch --quiet --directory="$dir/upstream" -p1 <"$patch"
  done
  local schema_dir="$dir/provider/cmd/pulumi-resource-docker"
  python3 - "$schema_dir/schema.json" "$schema_dir/schema-embed.json" "$DOCKER_VERSION" <<'PY'
import json, sys
source, target, version = sys.argv[1:]
with open(source) as f:
    schema = json.load(f)
schema["version"] = version
with open(target, "w") as f:
    json.dump(schema, f, separators=(",", ":"))
PY
  (
    cd "$dir/provider"
    go_build "$WORK_DIR/providers/pulumi-resource-docker" \
      "-X github.com/pulumi/pulumi-docker/provider/v5/pkg/version.Version=$DOCKER_VERSION" \
      ./cmd/pulumi-resource-docker
  )
}

install_plugins() {
  log "installing the providers as plugins under $STAGE_DIR/home"
  local -x PULUMI_HOME="$STAGE_DIR/home" PULUMI_SKIP_UPDATE_CHECK=true
  "$STAGE_DIR/bin/pulumi" plugin install resource command "$COMMAND_VERSION" \
    --file "$WORK_DIR/providers/pulumi-resource-command" >&2
  "$STAGE_DIR/bin/pulumi" plugin install resource docker "$DOCKER_VERSION" \
    --file "$WORK_DIR/providers/pulumi-resource-docker" >&2
  # The CLI logs each command under PULUMI_HOME; those of the build are no part of the product.
  rm -rf "$PULUMI_HOME/logs"
}

mkdir -p "$CACHE_DIR"
# Test runs and CI may call this at the same time: one builds, the others wait and reuse.
exec 9>"$CACHE_DIR/.build-$PRODUCT_NAME.lock"
flock 9

if product_is_complete "$PRODUCT_DIR"; then
  log "$PRODUCT_NAME already built"
else
  command -v go >/dev/null || die "needs Go (go.dev/dl) to build the Pulumi engine"
  command -v patch >/dev/null || die "needs patch (scripts/dev/install-prerequisites.sh installs it)"
  [[ -d "$SOURCES_DIR/pulumi-docker" ]] ||
    die "provider sources not found at $SOURCES_DIR (set PULUMI_ENGINE_SOURCES, or install pulumi)"
  log "building $PRODUCT_NAME (cold Go caches: up to 30 minutes on 2 cores; warm: about a minute)"
  rm -rf "$STAGE_DIR" "$WORK_DIR"
  mkdir -p "$STAGE_DIR/bin" "$WORK_DIR/providers"
  build_cli
  build_language_host
  build_command_provider
  build_docker_provider
  install_plugins
  product_is_complete "$STAGE_DIR" || die "built engine is incomplete or not the pinned versions"
  rm -rf "$PRODUCT_DIR"
  mv "$STAGE_DIR" "$PRODUCT_DIR"
  rm -rf "$WORK_DIR"
fi
echo "$PRODUCT_DIR"
