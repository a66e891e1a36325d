#!/usr/bin/env bash
# Some cloud VMs refuse GPU containers with "bpf_prog_query(BPF_CGROUP_DEVICE) failed: operation
# not permitted". Letting the runtime skip cgroup device rules (no-cgroups = true) is NVIDIA's
# documented way out; on every other VM the toolkit's default (false) is the safer one, so turning
# the setting off restores it. nvidia-ctk edits the TOML itself, so the file stays valid.
# The runtime reads this file at every container start: no Docker restart is needed.
set -euo pipefail
: "${NO_CGROUPS:?}"

config=/etc/nvidia-container-runtime/config.toml
before=$(sha256sum "$config" 2>/dev/null || echo absent)
nvidia-ctk config --set "nvidia-container-cli.no-cgroups=$NO_CGROUPS" --in-place --config="$config" >/dev/null
after=$(sha256sum "$config")
if [[ "$before" == "$after" ]]; then
  echo "ollama-gpu: unchanged: $config already has no-cgroups = $NO_CGROUPS"
else
  echo "ollama-gpu: changed: $config now has no-cgroups = $NO_CGROUPS"
fi
