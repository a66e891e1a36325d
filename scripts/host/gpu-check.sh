#!/usr/bin/env bash
# Proves host prep worked end to end: a throwaway container of the Ollama image must see the GPU
# through the NVIDIA runtime (nvidia-smi is injected by the runtime, not part of the image).
set -euo pipefail
: "${IMAGE:?}"

if ! gpus=$(docker run --rm --gpus all -e NVIDIA_DRIVER_CAPABILITIES=compute,utility \
  --entrypoint nvidia-smi "$IMAGE" -L 2>&1); then
  echo "ollama-gpu: a GPU container failed to start:" >&2
  echo "$gpus" >&2
  if grep -q 'bpf_prog_query' <<<"$gpus"; then
    echo "ollama-gpu: this VM needs the cgroup fix: pulumi config set --path hostPrep.cgroupFix true" >&2
  fi
  exit 1
fi
if ! grep -q '^GPU 0' <<<"$gpus"; then
  echo "ollama-gpu: the container started but lists no GPU: $gpus" >&2
  exit 1
fi
echo "ollama-gpu: GPU visible in containers: $gpus"
