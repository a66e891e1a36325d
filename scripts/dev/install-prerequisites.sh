#!/usr/bin/env bash
# Makes a Debian bookworm machine ready for `make test`: the Docker engine, the tools the image and
# stand-in repository scripts and the tests call, then a Docker daemon that answers.
# Does nothing when all of that is already in place.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=harness-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness-common.sh"

# docker.io: engine and client; debootstrap: base image; openssh-client: the SSH test host;
# gpg, dpkg-dev (dpkg-scanpackages), apt-utils (apt-ftparchive): the stand-in NVIDIA repository;
# make, python3-venv: the README's test command; shellcheck: the script lint test; curl: the
# model scripts run by the local stack; patch: the docker provider's patches in the Pulumi engine
# build (scripts/dev/build-pulumi-engine.sh; Go itself comes with the machine).
required_packages=(docker.io debootstrap debian-archive-keyring openssh-client gpg dpkg-dev apt-utils
  python3 python3-venv make shellcheck curl ca-certificates patch)
daemon_wait_seconds=60

missing_packages() {
  local package
  for package in "${required_packages[@]}"; do
    dpkg-query -W -f '${db:Status-Status}\n' "$package" 2>/dev/null | grep -qx installed ||
      printf '%s\n' "$package"
  done
}

require_root() {
  ((EUID == 0)) || die "must run as root to $1"
}

daemon_answers() {
  docker info >/dev/null 2>&1
}

start_daemon() {
  if [[ -d /run/systemd/system ]]; then
    systemctl start docker
    return
  fi
  # Without an init system (a container or a CI sandbox) dockerd runs detached. vfs is the storage
  # driver that works everywhere, nested inside another container's overlay filesystem included.
  mkdir -p "$HARNESS_CACHE"
  log "starting dockerd (log: $HARNESS_CACHE/dockerd.log)"
  setsid dockerd --storage-driver vfs >>"$HARNESS_CACHE/dockerd.log" 2>&1 </dev/null &
}

wait_for_daemon() {
  local deadline=$((SECONDS + daemon_wait_seconds))
  until daemon_answers; do
    ((SECONDS < deadline)) || die "docker daemon did not answer within ${daemon_wait_seconds}s"
    sleep 1
  done
}

mapfile -t missing < <(missing_packages)
if ((${#missing[@]})); then
  require_root "install ${missing[*]}"
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

if daemon_answers; then
  log "docker daemon already answers"
  exit 0
fi
require_root "start the docker daemon"
start_daemon
wait_for_daemon
log "docker daemon answers"
