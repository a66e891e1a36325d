#!/usr/bin/env bash
# Makes sure the base model is on the server. A model already present is not pulled again: a pull
# always asks the registry, so skipping it keeps re-deploys (and recreated containers on the kept
# volume) offline and fast.
set -euo pipefail
: "${API_URL:?}"
: "${BASE_MODEL:?}"
: "${SHOW_REQUEST:?}"
: "${PULL_REQUEST:?}"
: "${PULL_TIMEOUT_SECONDS:?}"

if curl -fsS -o /dev/null "$API_URL/api/show" -d "$SHOW_REQUEST"; then
  echo "ollama-gpu: unchanged: $BASE_MODEL is already present; not pulling"
  exit 0
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The pull streams one JSON status per line; print each distinct status once, not every chunk.
curl -fsS -N --max-time "$PULL_TIMEOUT_SECONDS" "$API_URL/api/pull" -d "$PULL_REQUEST" \
  | tee "$log" | grep -o '"status":"[^"]*"' | uniq
if grep -q '"error"' "$log" || ! tail -n 1 "$log" | grep -q '"status":"success"'; then
  echo "ollama-gpu: pulling $BASE_MODEL failed: $(tail -n 1 "$log")" >&2
  exit 1
fi
echo "ollama-gpu: changed: pulled $BASE_MODEL"
