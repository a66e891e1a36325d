#!/usr/bin/env bash
# Host prep on a GPU profile stops here when the VM has no working NVIDIA driver: everything after
# it (toolkit, runtime, the GPU container) would fail with far less helpful messages.
set -euo pipefail

if ! command -v nvidia-smi >/dev/null; then
  report="nvidia-smi not found"
elif ! report=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1); then
  report="nvidia-smi failed: $report"
else
  echo "ollama-gpu: unchanged: NVIDIA driver present: $report"
  exit 0
fi
echo "ollama-gpu: this VM has no working NVIDIA driver ($report)." >&2
echo "ollama-gpu: install one and reboot (Ubuntu: sudo ubuntu-drivers install --gpgpu, or" >&2
echo "ollama-gpu: sudo apt-get install nvidia-driver-550-server), or rent the provider's GPU image." >&2
exit 1
