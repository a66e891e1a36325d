#!/usr/bin/env bash
# The container's command: `ollama serve`, then, once the API answers, a load of the alias, so that
# after every start (first deploy, a health-check restart, a VM reboot) the model is in memory
# before the first request instead of that request paying the whole load. The alias may not exist
# yet (first deploy): then nothing is loaded and the deploy's alias step loads it.
# Runs under docker-init (PID 1), which signals only this shell: `docker stop`, a replacement or a
# reboot must reach the server too, so it gets a clean shutdown rather than the kernel's SIGKILL.
# The health check's kill -1 reaches this shell and the server alike.
set -uo pipefail
: "${WARM_MODEL:?}"
: "${READY_TIMEOUT_SECONDS:?}"

ollama serve &
server=$!

warm() {
  local deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
  until ollama list >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "ollama-gpu: server not answering after ${READY_TIMEOUT_SECONDS}s; not loading $WARM_MODEL"; return; }
    sleep 1
  done
  # `ollama run` pulls a missing model: check first, so a missing alias is never fetched from a registry.
  if ! ollama show "$WARM_MODEL" >/dev/null 2>&1; then
    echo "ollama-gpu: $WARM_MODEL does not exist yet; not loading it"
    return
  fi
  # An empty prompt only loads the model; the server's OLLAMA_KEEP_ALIVE keeps it loaded.
  if ollama run "$WARM_MODEL" "" </dev/null >/dev/null 2>&1; then
    echo "ollama-gpu: loaded $WARM_MODEL"
  else
    echo "ollama-gpu: loading $WARM_MODEL failed"
  fi
}

trap 'kill -TERM "$server" 2>/dev/null' TERM INT
warm &
# wait returns early when a trapped signal arrives; then wait again for the server to finish.
wait "$server"
status=$?
if kill -0 "$server" 2>/dev/null; then
  wait "$server"
  status=$?
fi
exit "$status"
