#!/usr/bin/env bash
# Starts the SSH test host (build-test-host-image.sh builds it) as container NAME: sshd listening on
# 127.0.0.1:PORT of this machine (host networking), accepting the public key in AUTHORIZED_KEY_FILE
# for the user ubuntu. Waits until sshd answers, then prints the host's public key line
# ("ssh-ed25519 AAAA...") on stdout, for pinning. Remove the host with: docker rm -f NAME
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=harness-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness-common.sh"

(($# == 3)) || die "usage: $0 NAME PORT AUTHORIZED_KEY_FILE"
name=$1 port=$2 authorized_key_file=$3
[[ $name == ollama-gpu-test-* ]] || die "the container name must start with ollama-gpu-test-"
sshd_wait_seconds=30

container_running() {
  [[ $(docker inspect --format '{{.State.Running}}' "$name" 2>/dev/null) == true ]]
}

sshd_answers() {
  local banner
  # shellcheck disable=SC2016 # $1 belongs to the inner shell
  banner=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && head -c 8 <&3' probe "$port" 2>/dev/null) ||
    return 1
  [[ $banner == SSH-2.0- ]]
}

docker run --detach --name "$name" --network host --label "$HARNESS_CONTAINER_LABEL" \
  --env "AUTHORIZED_KEY=$(<"$authorized_key_file")" "$HARNESS_TEST_HOST_IMAGE" "$port" >/dev/null
deadline=$((SECONDS + sshd_wait_seconds))
until container_running && sshd_answers; do
  if ! container_running || ((SECONDS >= deadline)); then
    docker logs "$name" >&2 || true
    docker rm --force "$name" >/dev/null
    die "sshd of $name did not answer on 127.0.0.1:$port"
  fi
  sleep 0.2
done
docker exec "$name" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2
