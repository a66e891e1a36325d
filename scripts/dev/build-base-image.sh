#!/usr/bin/env bash
# Builds ollama-gpu-test/debian:bookworm, the minimal Debian image the stand-in Ollama image and the
# SSH test host start from, with debootstrap and `docker import`: no registry is needed.
# The root filesystem tarball is cached; an image built from the same inputs is kept as it is.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=harness-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness-common.sh"

suite=bookworm
# Beyond minbase: TLS roots (the official image has them for model pulls) and the C++ and OpenMP
# runtimes that ollama and its ggml CPU backends link against (ldd of the CPU build: libstdc++,
# libgcc_s, libm, libc; the official image's backends add libgomp).
packages=(ca-certificates libstdc++6 libgcc-s1 libgomp1)
rootfs_setup=$HARNESS_DEV_DIR/base-rootfs
digest=$(inputs_digest -C "$HARNESS_DEV_DIR" "$(basename "${BASH_SOURCE[0]}")" base-rootfs)
tarball=$HARNESS_CACHE/base/debian-$suite-minbase-$digest.tar.gz

# The machine's own Debian mirror, as apt sees it, so a host behind a local mirror keeps using it.
debian_mirror() {
  local mirror
  # shellcheck disable=SC2016 # $(...) is apt's own field syntax here
  mirror=$(apt-get indextargets --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' 2>/dev/null |
    awk -v suite="$suite" '$2 == suite { print $1; exit }')
  printf '%s\n' "${mirror:-http://deb.debian.org/debian/}"
}

bootstrap_rootfs() {
  local rootfs=$1 mirror
  mirror=$(debian_mirror)
  log "debootstrap $suite from $mirror"
  debootstrap --variant=minbase --include="$(IFS=,; echo "${packages[*]}")" \
    "$suite" "$rootfs" "$mirror" >&2
  cp -r "$rootfs_setup/." "$rootfs/"
  # Package indexes and documentation only take space: every image layer is a full copy with vfs.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/etc/hostname
  # apt downloads as the unprivileged _apt user and warns when it cannot write there.
  chroot "$rootfs" install -d -o _apt -g root -m 700 /var/lib/apt/lists/partial /var/cache/apt/archives/partial
}

build_tarball() {
  ((EUID == 0)) || die "debootstrap needs root"
  mkdir -p "$(dirname "$tarball")"
  local rootfs
  rootfs=$(mktemp -d "$HARNESS_CACHE/base/rootfs.XXXXXX")
  chmod 755 "$rootfs" # it becomes the image's /, which every user must be able to traverse
  # shellcheck disable=SC2064 # the path is fixed now; the trap must remove this very directory
  trap "rm -rf '$rootfs'" EXIT
  bootstrap_rootfs "$rootfs"
  rm -f "$(dirname "$tarball")"/debian-"$suite"-minbase-*.tar.gz
  tar -C "$rootfs" --numeric-owner -czf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
}

if image_is_current "$HARNESS_BASE_IMAGE" "$digest"; then
  log "$HARNESS_BASE_IMAGE is up to date"
  exit 0
fi
[[ -s $tarball ]] || build_tarball
log "importing $tarball as $HARNESS_BASE_IMAGE"
docker import --change "LABEL $HARNESS_DIGEST_LABEL=$digest" --change 'CMD ["/bin/bash"]' \
  "$tarball" "$HARNESS_BASE_IMAGE" >/dev/null
prune_replaced_images
