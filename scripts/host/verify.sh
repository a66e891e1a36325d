#!/usr/bin/env bash
# Prints what the server really did with the loaded model, for ollama_gpu/verification.py to
# compare with the plan: /api/ps, the base model's metadata (/api/show), then the server's memory
# placement and dropped-setting lines.
set -euo pipefail
: "${API_URL:?}"
: "${CONTAINER_NAME:?}"
: "${SHOW_REQUEST:?}"

echo "### api/ps"
curl -fsS "$API_URL/api/ps"
echo
echo "### api/show"
curl -fsS "$API_URL/api/show" -d "$SHOW_REQUEST"
echo
echo "### placement log"
docker logs "$CONTAINER_NAME" 2>&1 \
  | grep -E 'msg="(model weights|kv cache|compute graph|total memory)"|offloaded [0-9]+/[0-9]+ layers|kv cache|flash attention' \
  | tail -n 200 || true
