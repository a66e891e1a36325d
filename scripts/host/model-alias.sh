#!/usr/bin/env bash
# Creates (or overwrites) the alias from the base model with the configured parameters, through
# POST /api/create's JSON form: the old `modelfile` text field is silently ignored since 0.5.5.
set -euo pipefail
: "${API_URL:?}"
: "${ALIAS:?}"
: "${CREATE_REQUEST:?}"

if ! response=$(curl -fsS "$API_URL/api/create" -d "$CREATE_REQUEST" 2>&1) || ! grep -q '"status":"success"' <<<"$response"; then
  echo "ollama-gpu: creating alias $ALIAS failed: $response" >&2
  exit 1
fi
echo "ollama-gpu: changed: alias $ALIAS = $CREATE_REQUEST"
