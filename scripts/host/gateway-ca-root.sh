#!/usr/bin/env bash
# Prints the root certificate of the gateway's internal CA, which Caddy creates in its data volume
# at first start: the stack exports it so clients can verify the gateway. The volume outlives the
# container, so a replaced gateway (a rotated key) serves certificates from the same root.
set -euo pipefail
: "${CONTAINER_NAME:?}"
: "${CA_ROOT_PATH:?}"
: "${WAIT_SECONDS:?}"

deadline=$((SECONDS + WAIT_SECONDS))
until root=$(docker exec "$CONTAINER_NAME" cat "$CA_ROOT_PATH" 2>/dev/null) \
  && [[ $root == "-----BEGIN CERTIFICATE-----"* && $root == *"-----END CERTIFICATE-----" ]]; do
  if ((SECONDS >= deadline)); then
    echo "ollama-gpu: the gateway $CONTAINER_NAME wrote no CA root at $CA_ROOT_PATH within ${WAIT_SECONDS}s; see: docker logs $CONTAINER_NAME" >&2
    exit 1
  fi
  sleep 1
done
printf '%s\n' "$root"
