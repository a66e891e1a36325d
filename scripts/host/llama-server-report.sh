#!/usr/bin/env bash
# After the llama-server container is healthy (its model loads before it answers), prints what the
# server did with the model, for the plan verification: its /props (context per slot, slots,
# alias) and the lines of its log that say where each buffer went (model weights, KV cache,
# compute, per device) and how the KV cache is typed.
set -euo pipefail
: "${API_URL:?}"
: "${CONTAINER_NAME:?}"
# shellcheck source=scripts/host/lib/api.sh
source "${BASH_SOURCE%/*}/lib/api.sh"

echo "### props"
api_call GET /props
echo "### placement log"
docker logs "$CONTAINER_NAME" 2>&1 |
  grep -E 'buffer size =|n_ctx_slot|llama_kv_cache: .*K \(|offloaded [0-9]+/[0-9]+ layers|flash_attn|fit_params' |
  tail -n 200 || true
