#!/usr/bin/env bash
# Docker health check, run inside the Ollama container (which has no curl: the ollama binary is
# the probe). Docker only marks a container unhealthy, and restart policies ignore that, so after
# FAILURES_BEFORE_RESTART failed probes in a row this kills the server; the container's init then
# exits and the restart policy starts a fresh server on the same models volume.
# No -e: a failed probe is the case this script exists to handle, not a reason to stop early.
set -uo pipefail
: "${PROBE_TIMEOUT_SECONDS:?}"
: "${FAILURES_BEFORE_RESTART:?}"

failures_file=/tmp/ollama-gpu-probe-failures
if timeout -s KILL "$PROBE_TIMEOUT_SECONDS" ollama list >/dev/null 2>&1; then
  echo 0 >"$failures_file"
  exit 0
fi
failures=$(($(cat "$failures_file" 2>/dev/null || echo 0) + 1))
echo "$failures" >"$failures_file"
echo "ollama-gpu: API probe failed ($failures/$FAILURES_BEFORE_RESTART)"
if ((failures >= FAILURES_BEFORE_RESTART)); then
  echo 0 >"$failures_file"
  echo "ollama-gpu: killing the unresponsive server so the restart policy replaces it"
  # With docker's init as PID 1, -1 reaches every other process: the server and its runners.
  kill -KILL -1
fi
exit 1
