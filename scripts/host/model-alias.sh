#!/usr/bin/env bash
# Creates (or overwrites) the alias from the base model with the configured parameters, loads it,
# and prints what the server then did with it, for the plan verification:
#   /api/ps, the base model's /api/show, and the server's placement lines.
# POST /api/create's JSON form is used: the old `modelfile` text field is ignored since 0.5.5.
# The container loads the alias again by itself at every start (container/serve.sh).
# A non-empty EXPECTED_OFFLOAD ("N/M", set under verification.failOnMismatch) makes the step itself
# fail when the server's layer split differs from it or the server dropped a requested setting: a
# failed step is not recorded as done, so the next `pulumi up` checks again.
set -euo pipefail
: "${API_URL:?}"
: "${ALIAS:?}"
: "${CREATE_REQUEST:?}"
: "${LOAD_REQUEST:?}"
: "${LOAD_TIMEOUT_SECONDS:?}"
: "${SHOW_REQUEST:?}"
: "${CONTAINER_NAME:?}"
: "${EXPECTED_OFFLOAD?}"
# shellcheck source=scripts/host/lib/api.sh
source "${BASH_SOURCE%/*}/lib/api.sh"

if ! response=$(api_call POST /api/create "$CREATE_REQUEST") || ! grep -q '"status":"success"' <<<"$response"; then
  echo "ollama-gpu: creating alias $ALIAS failed${response:+: $response}" >&2
  exit 1
fi
echo "ollama-gpu: alias $ALIAS = $CREATE_REQUEST"
if ! response=$(api_call POST /api/generate "$LOAD_REQUEST" "$LOAD_TIMEOUT_SECONDS") ||
  ! grep -q '"done":true' <<<"$response"; then
  echo "ollama-gpu: loading $ALIAS failed${response:+: $response}" >&2
  exit 1
fi
echo "ollama-gpu: loaded $ALIAS"

echo "### api/ps"
api_call GET /api/ps
echo "### api/show"
api_call POST /api/show "$SHOW_REQUEST"
echo "### placement log"
placement=$(docker logs "$CONTAINER_NAME" 2>&1 |
  grep -E 'msg="(model weights|kv cache|compute graph|total memory)"|offloaded [0-9]+/[0-9]+ layers|kv cache|flash attention' |
  tail -n 200 || true)
printf '%s\n' "$placement"

if [[ -n $EXPECTED_OFFLOAD ]]; then
  offloaded=$(grep -oE 'offloaded [0-9]+/[0-9]+ layers' <<<"$placement" | tail -n 1 || true)
  if [[ $offloaded != "offloaded $EXPECTED_OFFLOAD layers" ]]; then
    echo "ollama-gpu: the server ${offloaded:-logged no layer placement}; the plan says offloaded $EXPECTED_OFFLOAD layers" \
      "(verification.failOnMismatch is true)" >&2
    exit 1
  fi
  if dropped=$(grep -E 'flash attention disabled|must be enabled to use a quantized|not supported by' <<<"$placement"); then
    echo "ollama-gpu: the server dropped a requested setting (verification.failOnMismatch is true): $dropped" >&2
    exit 1
  fi
fi
