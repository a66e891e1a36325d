#!/usr/bin/env bash
# Makes sure the base model is on the server. A model already present is not pulled again: a pull
# always asks the registry, so skipping it keeps re-deploys (and recreated containers on the kept
# volume) offline and fast. A 32 GB pull takes long: progress is printed as it streams (every
# PROGRESS_STEP_PERCENT), and the script itself enforces PULL_TIMEOUT_SECONDS, since Pulumi's
# customTimeouts stop waiting for a command but do not stop the command.
set -euo pipefail
: "${API_URL:?}"
: "${PULL_NAME:?}"
: "${SHOW_REQUEST:?}"
: "${PULL_REQUEST:?}"
: "${PULL_TIMEOUT_SECONDS:?}"
: "${PROGRESS_STEP_PERCENT:?}"
# shellcheck source=scripts/host/lib/api.sh
source "${BASH_SOURCE%/*}/lib/api.sh"

if api_call POST /api/show "$SHOW_REQUEST" >/dev/null 2>&1; then
  echo "ollama-gpu: unchanged: $PULL_NAME is already present; not pulling"
  exit 0
fi

echo "ollama-gpu: pulling $PULL_NAME (at most ${PULL_TIMEOUT_SECONDS}s)"
curl_errors=$(mktemp)
trap 'rm -f "$curl_errors"' EXIT
last_status='' last_step=-1 outcome='' curl_status=''
# Each line of the stream is one JSON object; only "status", "completed", "total" and "error"
# matter, and they are flat fields, so a pattern match suffices (no JSON tool on a bare VM).
while IFS= read -r line; do
  if [[ $line =~ \"error\":\"(([^\"\\]|\\.)*)\" ]]; then
    reason=${BASH_REMATCH[1]}
    outcome="error: ${reason//\\\"/\"}"
    break
  fi
  if [[ $line =~ ^ollama-gpu-curl-exit:([0-9]+)$ ]]; then
    curl_status=${BASH_REMATCH[1]}
    continue
  fi
  [[ $line =~ \"status\":\"([^\"]*)\" ]] || continue
  status=${BASH_REMATCH[1]}
  if [[ $status == success ]]; then
    outcome=success
    break
  fi
  if [[ $line =~ \"total\":([0-9]+) ]] && ((BASH_REMATCH[1] > 0)); then
    total=${BASH_REMATCH[1]} completed=0
    [[ $line =~ \"completed\":([0-9]+) ]] && completed=${BASH_REMATCH[1]}
    step=$((completed * 100 / total / PROGRESS_STEP_PERCENT))
    if [[ $status != "$last_status" ]] || ((step != last_step)); then
      echo "ollama-gpu: $status: $((completed >> 20)) / $((total >> 20)) MiB"
      last_status=$status last_step=$step
    fi
  elif [[ $status != "$last_status" ]]; then
    echo "ollama-gpu: $status"
    last_status=$status last_step=-1
  fi
done < <(
  exit_code=0
  curl -sS -N --max-time "$PULL_TIMEOUT_SECONDS" "$API_URL/api/pull" -d "$PULL_REQUEST" 2>"$curl_errors" ||
    exit_code=$?
  # The stream ends with curl's own verdict (on a line of its own: a cut stream may end mid-line),
  # so a timeout and a dead server read differently.
  printf '\nollama-gpu-curl-exit:%s\n' "$exit_code"
)

case $outcome in
  success) echo "ollama-gpu: changed: pulled $PULL_NAME" ;;
  '')
    if [[ $curl_status == 28 ]]; then
      echo "ollama-gpu: pulling $PULL_NAME did not finish within ${PULL_TIMEOUT_SECONDS}s" \
        "(model.pullTimeout); last status: ${last_status:-none}" >&2
    else
      echo "ollama-gpu: pulling $PULL_NAME failed: the server stopped answering" \
        "($(tr '\n' ' ' <"$curl_errors")); last status: ${last_status:-none}" >&2
    fi
    exit 1
    ;;
  *)
    echo "ollama-gpu: pulling $PULL_NAME failed: ${outcome#error: }" >&2
    exit 1
    ;;
esac
