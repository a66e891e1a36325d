#!/usr/bin/env bash
# Docker health check, run inside the llama-server container (the official image has curl). Docker
# only marks a container unhealthy, and restart policies ignore that, so after
# FAILURES_BEFORE_RESTART failed probes in a row this kills the server; the container's init then
# exits and the restart policy starts a fresh server, which loads the model before it answers.
# The probe is GET /slots, not only /health: /health is answered by the HTTP threads alone, while
# /slots is a task the server's main loop must take from its queue (high priority, between two
# decode steps), so a wedged inference loop fails it. A 1-token completion would prove the same,
# but it waits behind a busy slot for a whole answer and evicts the slot's cached prompt, which
# the next turn of a long conversation would then prefill again.
# While the model loads the server answers 503: not healthy, but not a failure to count either.
# No -e: a failed probe is the case this script exists to handle, not a reason to stop early.
set -uo pipefail
: "${PROBE_TIMEOUT_SECONDS:?}"
: "${FAILURES_BEFORE_RESTART:?}"

failures_file=/tmp/ollama-gpu-probe-failures
probe() {
  curl -sS -o /dev/null -w '%{http_code}' --max-time "$PROBE_TIMEOUT_SECONDS" "http://127.0.0.1:8080$1" 2>/dev/null
}
health=$(probe /health)
if [[ $health == 503 ]]; then
  echo "ollama-gpu: the model is still loading"
  exit 1
fi
slots=not-asked
if [[ $health == 200 ]]; then
  slots=$(probe /slots)
  if [[ $slots == 200 ]]; then
    echo 0 >"$failures_file"
    exit 0
  fi
fi
failures=$(($(cat "$failures_file" 2>/dev/null || echo 0) + 1))
echo "$failures" >"$failures_file"
# 000: no answer within the probe's time.
echo "ollama-gpu: server probe failed (/health: $health, /slots: $slots) ($failures/$FAILURES_BEFORE_RESTART)"
if ((failures >= FAILURES_BEFORE_RESTART)); then
  echo 0 >"$failures_file"
  echo "ollama-gpu: killing the unresponsive server so the restart policy replaces it"
  # With docker's init as PID 1, -1 reaches every other process: the server.
  kill -KILL -1
fi
exit 1
