#!/usr/bin/env bash
# Installs the NVIDIA container toolkit, at the pinned version when one is given.
# An empty TOOLKIT_VERSION means "whatever the repository has newest", installed once.
set -euo pipefail
: "${TOOLKIT_VERSION?}"
: "${APT_LOCK_TIMEOUT_SECONDS:?}"
# shellcheck source=scripts/host/lib/apt.sh
source "${BASH_SOURCE%/*}/lib/apt.sh"

export DEBIAN_FRONTEND=noninteractive
installed=$(dpkg-query -W -f='${db:Status-Status} ${Version}' nvidia-container-toolkit 2>/dev/null || true)
if [[ "$installed" == "installed "* && ( -z "$TOOLKIT_VERSION" || "$installed" == "installed $TOOLKIT_VERSION" ) ]]; then
  echo "ollama-gpu: unchanged: nvidia-container-toolkit ${installed#installed }"
  exit 0
fi

apt_get update -qq >/dev/null
packages=(nvidia-container-toolkit)
if [[ -n "$TOOLKIT_VERSION" ]]; then
  # NVIDIA ships the toolkit as several packages of one version; pinning only the top one lets
  # apt pick newer dependencies that refuse to install beside it.
  packages=()
  for package in nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1; do
    if apt-cache show "$package=$TOOLKIT_VERSION" >/dev/null 2>&1; then
      packages+=("$package=$TOOLKIT_VERSION")
    fi
  done
  if ((${#packages[@]} == 0)); then
    echo "ollama-gpu: nvidia-container-toolkit $TOOLKIT_VERSION is not in the repository (config key hostPrep.toolkitVersion)" >&2
    echo "ollama-gpu: available: $(apt-cache madison nvidia-container-toolkit | awk '{print $3}' | tr '\n' ' ')" >&2
    exit 1
  fi
fi
# --force-confold keeps a config.toml that the cgroup fix edited when the package is upgraded.
apt_get install -y -qq --allow-downgrades -o Dpkg::Options::=--force-confold "${packages[@]}" >/dev/null
echo "ollama-gpu: changed: installed ${packages[*]}"
