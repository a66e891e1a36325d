#!/usr/bin/env bash
# Removes only the alias; the base model's blobs stay, so recreating the stack does not pull again.
set -euo pipefail
: "${API_URL:?}"
: "${ALIAS:?}"
: "${DELETE_REQUEST:?}"

status=$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$API_URL/api/delete" -d "$DELETE_REQUEST") || status=unreachable
case "$status" in
  200) echo "ollama-gpu: changed: deleted alias $ALIAS" ;;
  404) echo "ollama-gpu: unchanged: alias $ALIAS was already gone" ;;
  # The container may already be gone on a full destroy; the alias went with it.
  unreachable | 000) echo "ollama-gpu: unchanged: server unreachable, nothing to delete" ;;
  *) echo "ollama-gpu: deleting alias $ALIAS failed with HTTP $status" >&2; exit 1 ;;
esac
