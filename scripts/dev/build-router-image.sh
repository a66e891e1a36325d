#!/usr/bin/env bash
# Builds ollama-gpu-test/litellm:<LITELLM_VERSION from pins.env>, the stand-in for LiteLLM's
# official proxy image the router runs (see router-standin.Dockerfile), and prints its tag on
# stdout. router-standin/requirements.txt pins every wheel; they are downloaded from PyPI with this
# machine's pip (cached by the file's hash) and installed offline in the image, which then needs
# no network.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=harness-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness-common.sh"

requirements=$HARNESS_DEV_DIR/router-standin/requirements.txt
version=$(sed -n 's/^LITELLM_VERSION=//p' "$HARNESS_REPO_ROOT/pins.env")
[[ -n $version ]] || die "LITELLM_VERSION missing from pins.env"
grep -qxF "litellm[proxy]==$version" "$requirements" ||
  die "router-standin/requirements.txt does not pin litellm[proxy]==$version (pins.env)"

# The image's Python: bookworm's CPython 3.11 on glibc 2.36.
platforms=(manylinux_2_36_x86_64 manylinux_2_34_x86_64 manylinux_2_28_x86_64 manylinux_2_17_x86_64
  manylinux2014_x86_64 linux_x86_64)
context=$HARNESS_CACHE/litellm-$version-$(sha256sum <"$requirements" | cut -c1-16)
if [[ ! -d $context/wheels ]]; then
  log "downloading the wheels of $requirements"
  rm -rf "$context.partial" && mkdir -p "$context.partial"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
    --abi cp311 "${platforms[@]/#/--platform=}" -d "$context.partial/wheels" -r "$requirements" >&2
  cp "$requirements" "$context.partial/requirements.txt"
  mv "$context.partial" "$context"
fi
tag=ollama-gpu-test/litellm:$version
build_on_base_image "$tag" "$HARNESS_DEV_DIR/router-standin.Dockerfile" "$context" --network host
echo "$tag"
