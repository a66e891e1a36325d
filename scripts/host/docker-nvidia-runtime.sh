#!/usr/bin/env bash
# Registers the NVIDIA runtime with Docker. Docker is restarted only when its daemon.json really
# changed: a restart stops every container on the host, and on some cloud images the runtime is
# already configured.
set -euo pipefail

daemon_json=/etc/docker/daemon.json
if grep -qs '"nvidia-container-runtime"' "$daemon_json"; then
  echo "ollama-gpu: unchanged: $daemon_json already names nvidia-container-runtime"
  exit 0
fi

before=$(sha256sum "$daemon_json" 2>/dev/null || echo absent)
nvidia-ctk runtime configure --runtime=docker --config="$daemon_json" >/dev/null
after=$(sha256sum "$daemon_json")
if [[ "$before" == "$after" ]]; then
  echo "ollama-gpu: unchanged: $daemon_json"
  exit 0
fi
systemctl restart docker
echo "ollama-gpu: changed: $daemon_json now names the NVIDIA runtime; Docker restarted"
