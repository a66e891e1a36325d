# shellcheck shell=bash
# Calls to the Ollama API from the host scripts. Unlike `curl -f`, a failed call prints the
# server's own reason (e.g. "model requires more system memory"), which is the message the user needs.

# api_call METHOD PATH [BODY [MAX_SECONDS]]: prints the response body; fails with the HTTP status
# and the body on stderr when the status is not 2xx, or when the server does not answer.
api_call() {
  local method=$1 path=$2 body=${3:-} max_seconds=${4:-60} response status
  if ! response=$(curl -sS -X "$method" --max-time "$max_seconds" -w '\n%{http_code}' \
    "$API_URL$path" ${body:+-d "$body"} 2>&1); then
    echo "ollama-gpu: $method $path: the server did not answer: $response" >&2
    return 1
  fi
  status=${response##*$'\n'}
  response=${response%$'\n'*}
  if [[ $status != 2?? ]]; then
    echo "ollama-gpu: $method $path: HTTP $status: $response" >&2
    return 1
  fi
  printf '%s\n' "$response"
}
