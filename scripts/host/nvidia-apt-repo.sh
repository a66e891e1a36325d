#!/usr/bin/env bash
# Adds NVIDIA's container-toolkit apt repository, trusting only a signing key whose fingerprint
# matches the pinned one: a compromised mirror or a typo in the URL stops here.
# Prints "ollama-gpu: changed|unchanged: ..." so repeated runs are visibly idempotent.
set -euo pipefail
: "${NVIDIA_REPO_URL:?}"
: "${NVIDIA_KEY_FINGERPRINT:?}"
: "${APT_LOCK_TIMEOUT_SECONDS:?}"
# shellcheck source=scripts/host/lib/apt.sh
source "${BASH_SOURCE%/*}/lib/apt.sh"

keyring=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
sources=/etc/apt/sources.list.d/nvidia-container-toolkit.list
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v gpg >/dev/null || missing+=(gpg)
if ((${#missing[@]})); then
  apt_get update -qq >/dev/null
  apt_get install -y -qq "${missing[@]}" ca-certificates >/dev/null
fi

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
curl -fsSL "$NVIDIA_REPO_URL/gpgkey" -o "$workdir/key.asc"
gpg --batch --quiet --homedir "$workdir" --dearmor -o "$workdir/keyring.gpg" "$workdir/key.asc"
fingerprints=$(gpg --batch --homedir "$workdir" --show-keys --with-colons "$workdir/keyring.gpg" | awk -F: '$1 == "fpr" {print $10}')
if ! grep -qx "$NVIDIA_KEY_FINGERPRINT" <<<"$fingerprints"; then
  echo "ollama-gpu: the key at $NVIDIA_REPO_URL/gpgkey has fingerprint(s) $(echo "$fingerprints" | tr '\n' ' ')" >&2
  echo "ollama-gpu: expected $NVIDIA_KEY_FINGERPRINT (config key hostPrep.nvidiaKeyFingerprint); refusing to trust it" >&2
  exit 1
fi

changed=0
if ! cmp -s "$workdir/keyring.gpg" "$keyring"; then
  install -m 0644 "$workdir/keyring.gpg" "$keyring"
  changed=1
fi
# $(ARCH) is apt's own variable, written literally into the list.
# shellcheck disable=SC2016
line=$(printf 'deb [signed-by=%s] %s/stable/deb/$(ARCH) /' "$keyring" "$NVIDIA_REPO_URL")
if [[ "$(cat "$sources" 2>/dev/null)" != "$line" ]]; then
  printf '%s\n' "$line" >"$sources"
  changed=1
fi

if ((changed)); then
  apt_get update -qq >/dev/null
  echo "ollama-gpu: changed: NVIDIA apt repository at $NVIDIA_REPO_URL"
else
  echo "ollama-gpu: unchanged: NVIDIA apt repository at $NVIDIA_REPO_URL"
fi
