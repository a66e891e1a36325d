#!/usr/bin/env bash
# Loads the alias once and keeps it loaded, so the first real request does not pay a 30 GB load.
# A generate request with no prompt only loads the model.
set -euo pipefail
: "${API_URL:?}"
: "${ALIAS:?}"
: "${WARM_REQUEST:?}"
: "${LOAD_TIMEOUT_SECONDS:?}"

if ! response=$(curl -fsS --max-time "$LOAD_TIMEOUT_SECONDS" "$API_URL/api/generate" -d "$WARM_REQUEST" 2>&1) || ! grep -q '"done":true' <<<"$response"; then
  echo "ollama-gpu: loading $ALIAS failed: $response" >&2
  exit 1
fi
echo "ollama-gpu: loaded $ALIAS"
