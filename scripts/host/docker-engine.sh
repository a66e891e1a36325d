#!/usr/bin/env bash
# First step of host prep on any VM: a Docker engine the deploy can reach over SSH as the login
# user. A freshly rented VM may have none.
set -euo pipefail
: "${APT_LOCK_TIMEOUT_SECONDS:?}"
: "${INSTALL_DOCKER:?}"
: "${DOCKER_USER:?}"
: "${REGISTRY_MIRROR?}"
: "${INSECURE_REGISTRIES?}"
# shellcheck source=scripts/host/lib/apt.sh
source "${BASH_SOURCE%/*}/lib/apt.sh"

export DEBIAN_FRONTEND=noninteractive
changes=()

if ! command -v docker >/dev/null; then
  if [[ $INSTALL_DOCKER != 1 ]]; then
    echo "ollama-gpu: Docker is not installed on this VM and hostPrep.installDocker is false." >&2
    echo "ollama-gpu: install docker.io or docker-ce on it, or set hostPrep.installDocker: true" >&2
    exit 1
  fi
  echo "ollama-gpu: installing docker.io"
  apt_get update -qq >/dev/null
  apt_get install -y -qq docker.io >/dev/null
  changes+=("installed docker.io")
fi

# Docker over ssh:// runs `docker system dial-stdio` as the login user, which needs the socket.
if [[ $DOCKER_USER != root ]] && ! id -nG "$DOCKER_USER" | tr ' ' '\n' | grep -qx docker; then
  usermod -aG docker "$DOCKER_USER"
  changes+=("$DOCKER_USER may use the Docker socket")
fi

# A Docker Hub mirror lets a VM without internet pull the Ollama image by its official name; a
# registry without TLS (INSECURE_REGISTRIES, space-separated host:port) can serve other images,
# such as llama-server's, by their own address.
daemon_json=/etc/docker/daemon.json
restart=0
if [[ -n $REGISTRY_MIRROR || -n $INSECURE_REGISTRIES ]]; then
  mkdir -p /etc/docker
  if python3 - "$daemon_json" "$REGISTRY_MIRROR" "$INSECURE_REGISTRIES" <<'PY'; then
import json, sys
path, mirror, insecure = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3].split()
try:
    with open(path) as handle:
        config = json.load(handle)
except FileNotFoundError:
    config = {}
wanted = dict(config)
if mirror:
    wanted["registry-mirrors"] = [mirror]
    if mirror.startswith("http://"):
        insecure.append(mirror.split("://", 1)[1])
if insecure:
    wanted["insecure-registries"] = sorted(set(config.get("insecure-registries", [])) | set(insecure))
if wanted == config:
    sys.exit(1)
with open(path, "w") as handle:
    json.dump(wanted, handle, indent=2)
    handle.write("\n")
PY
    changes+=("Docker's registries: mirror ${REGISTRY_MIRROR:-none}, plain-HTTP registries ${INSECURE_REGISTRIES:-none}")
    restart=1
  fi
fi

if ((restart)); then
  systemctl restart docker
elif ! systemctl is-active --quiet docker; then
  systemctl enable --now docker
  changes+=("started Docker")
fi

if ((${#changes[@]})); then
  printf 'ollama-gpu: changed: %s\n' "${changes[@]}"
else
  echo "ollama-gpu: unchanged: Docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo installed)"
fi
