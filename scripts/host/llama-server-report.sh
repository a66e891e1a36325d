#!/usr/bin/env bash
# After the llama-server container is healthy (its model loads before it answers), prints what the
# server did with the model, for the plan verification: its /props (context per slot, slots,
# alias) and the lines of its log that say where each buffer went (model weights, KV cache,
# compute, per device) and how the KV cache is typed.
# Non-empty EXPECTED_SLOT_CONTEXT and EXPECTED_KV_TYPE (set under verification.failOnMismatch) make
# the step itself fail when the server did not take the context per slot or the KV cache type the
# stack asks for: a failed step is not recorded as done, so the next `pulumi up` checks again.
set -euo pipefail
: "${API_URL:?}"
: "${CONTAINER_NAME:?}"
: "${EXPECTED_SLOT_CONTEXT?}"
: "${EXPECTED_KV_TYPE?}"
# shellcheck source=scripts/host/lib/api.sh
source "${BASH_SOURCE%/*}/lib/api.sh"

echo "### props"
api_call GET /props
echo "### placement log"
placement=$(docker logs "$CONTAINER_NAME" 2>&1 |
  grep -E 'buffer size =|n_ctx_slot|llama_kv_cache: .*K \(|offloaded [0-9]+/[0-9]+ layers|flash_attn|fit_params' |
  tail -n 200 || true)
printf '%s\n' "$placement"

mismatch() {
  echo "ollama-gpu: $* (verification.failOnMismatch is true)" >&2
  exit 1
}
if [[ -n $EXPECTED_SLOT_CONTEXT ]]; then
  slot=$(grep -oE 'n_ctx_slot = [0-9]+' <<<"$placement" | tail -n 1 || true)
  [[ $slot == "n_ctx_slot = $EXPECTED_SLOT_CONTEXT" ]] ||
    mismatch "the server runs ${slot:-no logged context per slot}; the stack asks for n_ctx_slot = $EXPECTED_SLOT_CONTEXT"
fi
if [[ -n $EXPECTED_KV_TYPE ]]; then
  types=$(sed -nE 's/.*llama_kv_cache: .*K \(([a-z0-9_]+)\):.*V \(([a-z0-9_]+)\):.*/K \1, V \2/p' <<<"$placement" | tail -n 1)
  [[ $types == "K $EXPECTED_KV_TYPE, V $EXPECTED_KV_TYPE" ]] ||
    mismatch "the server's KV cache is ${types:-not logged}; the stack asks for $EXPECTED_KV_TYPE"
fi
