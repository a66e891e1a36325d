# shellcheck shell=bash
# Sourced by the scripts/dev harness scripts (docker, images, stand-in apt repository) so they agree
# on where the repository and the cache are, and how an image records what it was built from.
# The variables are read by the scripts that source this file:
# shellcheck disable=SC2034

HARNESS_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HARNESS_DEV_DIR=$HARNESS_REPO_ROOT/scripts/dev
HARNESS_CACHE=${OLLAMA_GPU_CACHE:-$HARNESS_REPO_ROOT/.cache}
HARNESS_BASE_IMAGE=ollama-gpu-test/debian:bookworm
HARNESS_TEST_HOST_IMAGE=ollama-gpu-test/gpu-host:bookworm
HARNESS_REGISTRY_IMAGE=ollama-gpu-test/registry:bookworm
HARNESS_VM_IMAGE=ollama-gpu-test/vm:bookworm
# Every container the harness starts carries this label: docker ps --filter label=ollama-gpu-test
HARNESS_CONTAINER_LABEL=ollama-gpu-test
# Every image carries this label; a rebuild is needed only when its inputs hash differently.
HARNESS_DIGEST_LABEL=ollama-gpu-test.input-digest

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "$*"; exit 1; }

pinned_ollama_version() {
  local version
  version=$(sed -n 's/^OLLAMA_VERSION=//p' "$HARNESS_REPO_ROOT/pins.env")
  [[ -n $version ]] || die "OLLAMA_VERSION missing from pins.env"
  printf '%s\n' "$version"
}

# Hash of files and directory trees (tar arguments, e.g. -C DIR .): names, modes, link targets and
# contents, independent of mtimes and owners, so a rebuilt but identical input keeps its image.
inputs_digest() {
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - "$@" | sha256sum | cut -c1-16
}

image_is_current() {
  local image=$1 digest=$2 recorded
  recorded=$(docker image inspect --format "{{ index .Config.Labels \"$HARNESS_DIGEST_LABEL\" }}" \
    "$image" 2>/dev/null) || return 1
  [[ $recorded == "$digest" ]]
}

# Builds TAG from DOCKERFILE (which takes the base image as ARG BASE_IMAGE) and the CONTEXT
# directory, unless the image there was built from the same base image, Dockerfile and context.
# Further arguments go to `docker build`. Build output goes to stderr so that stdout stays free for
# what a script reports. The legacy builder is what Debian's docker.io 20.10 has without plugins;
# asking for it explicitly keeps newer clients (which would look for buildx) on the same path.
build_on_base_image() {
  local tag=$1 dockerfile=$2 context=$3 base_id digest
  shift 3
  "$HARNESS_DEV_DIR/build-base-image.sh"
  base_id=$(docker image inspect --format '{{.Id}}' "$HARNESS_BASE_IMAGE")
  digest=$(printf '%s\n' "$base_id" "$(sha256sum <"$dockerfile")" "$(inputs_digest -C "$context" .)" |
    sha256sum | cut -c1-16)
  if image_is_current "$tag" "$digest"; then
    log "$tag is up to date"
    return
  fi
  log "building $tag from $context"
  DOCKER_BUILDKIT=0 docker build "$@" --label "$HARNESS_DIGEST_LABEL=$digest" \
    --build-arg "BASE_IMAGE=$HARNESS_BASE_IMAGE" -f "$dockerfile" -t "$tag" "$context" >&2
  prune_replaced_images
}

# An image that a rebuild untagged goes at once: with vfs it holds full copies of all its layers.
prune_replaced_images() {
  docker image prune --force --filter "label=$HARNESS_DIGEST_LABEL" >/dev/null
}
