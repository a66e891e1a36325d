#!/usr/bin/env bash
# For llama-server: puts the model the stack names into the models volume exactly as Ollama's pull
# would (manifest and every blob it lists, under models/manifests and models/blobs), so the GGUF is
# the blob Ollama would load, and a later switch to Ollama finds the model already present; Ollama
# also prunes blobs no manifest lists at its start, so the manifest is what keeps the GGUF. Then it
# links the GGUF where the llama-server container's --model points (LINK_PATH, relative to models/).
# A model already complete in the volume is not fetched again (no registry contact: re-deploys stay
# offline). Each blob is downloaded resumably (curl -C -, into a partial file outside blobs/),
# checked against its sha256 digest before it is moved into place, and the manifest is written last,
# so an interrupted fetch never leaves a model that looks complete. TIMEOUT_SECONDS bounds the whole
# fetch in the script itself (Pulumi's customTimeouts do not stop a running command).
set -euo pipefail
: "${VOLUME:?}"
: "${REGISTRY_URL:?}"
: "${REPOSITORY:?}"
: "${TAG:?}"
: "${MANIFEST_PATH:?}"
: "${LINK_PATH:?}"
: "${TIMEOUT_SECONDS:?}"
: "${PROGRESS_SECONDS:?}"

model_media_type=application/vnd.ollama.image.model
manifest_accept=application/vnd.docker.distribution.manifest.v2+json
name="$REPOSITORY:$TAG from $REGISTRY_URL"
deadline=$((SECONDS + TIMEOUT_SECONDS))

volume_root=$(docker volume inspect --format '{{.Mountpoint}}' "$VOLUME")
if [[ $volume_root != /* ]]; then
  echo "ollama-gpu: Docker reports no mountpoint for volume $VOLUME" >&2
  exit 1
fi
models="$volume_root/models"
downloads="$models/llama-server/downloads"
mkdir -p "$models/blobs" "$downloads"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# layers FILE: "digest size mediaType" for the config and each layer of a manifest; fails unless
# exactly one layer is the model. python3 reads the JSON (a bare VM has no other JSON tool).
layers() {
  python3 - "$1" "$model_media_type" <<'PY'
import json, re, sys
manifest = json.load(open(sys.argv[1]))
entries = [manifest["config"], *manifest["layers"]] if manifest.get("config") else list(manifest["layers"])
if sum(entry.get("mediaType") == sys.argv[2] for entry in entries) != 1:
    sys.exit("the manifest does not hold exactly one model layer")
for entry in entries:
    digest, size = entry["digest"], entry["size"]
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest) or not isinstance(size, int) or size < 0:
        sys.exit(f"the manifest lists a blob with digest {digest!r} and size {size!r}")
    print(digest, size, entry.get("mediaType", ""))
PY
}

model_blob() {
  awk -v type="$model_media_type" '$3 == type { sub(":", "-", $1); print $1 }' "$1"
}

link_model() {
  local blob=$1 link="$models/$LINK_PATH" up
  mkdir -p "${link%/*}"
  # Relative, so the link resolves wherever the volume is mounted (read-only in the container).
  up=$(tr -cd / <<<"$LINK_PATH" | sed 's#/#../#g')
  ln -sfn "${up}blobs/$blob" "$link"
}

# A model already complete in the volume (its manifest is written only once every blob is in place).
if [[ -f $models/$MANIFEST_PATH ]] && layers "$models/$MANIFEST_PATH" >"$work/layers" 2>/dev/null &&
  awk '{ sub(":", "-", $1); print $1 }' "$work/layers" | while read -r blob; do [[ -f $models/blobs/$blob ]] || exit 1; done; then
  blob=$(model_blob "$work/layers")
  link_model "$blob"
  echo "ollama-gpu: unchanged: $REPOSITORY:$TAG is already in volume $VOLUME; not fetching"
  echo "ollama-gpu: model file: blobs/$blob"
  exit 0
fi

# registry_get PATH OUTPUT [CURL_ARGS...]: GET $REGISTRY_URL/v2/$REPOSITORY/PATH into OUTPUT,
# following redirects (blob storage); a registry that asks for an anonymous bearer token (the docker
# token flow public repositories use) gets one. Prints the HTTP status. Each call runs in a
# subshell (command substitution, background download), so each asks for its own token.
token=''
registry_get() {
  local path=$1 output=$2 status challenge realm service scope
  shift 2
  local url="$REGISTRY_URL/v2/$REPOSITORY/$path" remaining=$((deadline - SECONDS))
  ((remaining > 0)) || remaining=1
  status=$(curl -sS -L --max-time "$remaining" -D "$work/headers" -o "$output" -w '%{http_code}' \
    ${token:+-H "Authorization: Bearer $token"} "$@" "$url") || true
  # curl prints 000 for no answer, and the status even when --fail makes it exit non-zero.
  [[ -n $status ]] || status=000
  if [[ $status == 401 && -z $token ]]; then
    challenge=$(grep -i '^www-authenticate: *bearer' "$work/headers" | tail -n 1 || true)
    realm=$(sed -n 's/.*realm="\([^"]*\)".*/\1/p' <<<"$challenge")
    service=$(sed -n 's/.*service="\([^"]*\)".*/\1/p' <<<"$challenge")
    scope=$(sed -n 's/.*scope="\([^"]*\)".*/\1/p' <<<"$challenge")
    if [[ $realm == http*://* ]] &&
      token=$(curl -sS --max-time 60 -G "$realm" --data-urlencode "service=$service" --data-urlencode "scope=$scope" |
        python3 -c 'import json, sys; answer = json.load(sys.stdin); print(answer.get("token") or answer["access_token"])'); then
      registry_get "$path" "$output" "$@"
      return
    fi
  fi
  printf '%s\n' "$status"
}

echo "ollama-gpu: fetching $name (at most ${TIMEOUT_SECONDS}s)"
status=$(registry_get "manifests/$TAG" "$work/manifest" -H "Accept: $manifest_accept")
if [[ $status != 200 ]]; then
  echo "ollama-gpu: fetching the manifest of $name failed: HTTP $status: $(head -c 500 "$work/manifest" 2>/dev/null || true)" >&2
  exit 1
fi
if ! layers "$work/manifest" >"$work/layers" 2>"$work/error"; then
  echo "ollama-gpu: the manifest of $name cannot be used: $(cat "$work/error")" >&2
  exit 1
fi

fetched=0
while read -r digest size _; do
  blob=${digest/:/-}
  [[ -f $models/blobs/$blob ]] && continue
  partial="$downloads/$blob"
  have=$(stat -c %s "$partial" 2>/dev/null || echo 0)
  echo "ollama-gpu: downloading $digest: $((size >> 20)) MiB$( ((have == 0)) || echo " (resuming at $((have >> 20)) MiB)")"
  if ((have < size)); then
    # --fail: an error page must not be appended to the partial file.
    registry_get "blobs/$digest" "$partial" --fail -C - >"$work/status" &
    download=$!
    waited=0
    while kill -0 "$download" 2>/dev/null; do
      sleep 1
      waited=$((waited + 1))
      if ((waited % PROGRESS_SECONDS == 0)) && kill -0 "$download" 2>/dev/null; then
        echo "ollama-gpu: $digest: $(($(stat -c %s "$partial" 2>/dev/null || echo 0) >> 20)) / $((size >> 20)) MiB"
      fi
    done
    wait "$download" || true
    status=$(cat "$work/status")
    if [[ $status != 200 && $status != 206 ]]; then
      if ((SECONDS >= deadline)); then
        echo "ollama-gpu: fetching $name did not finish within ${TIMEOUT_SECONDS}s (model.pullTimeout);" \
          "the next run resumes at $(($(stat -c %s "$partial" 2>/dev/null || echo 0) >> 20)) MiB" >&2
      else
        echo "ollama-gpu: downloading $digest of $name failed: HTTP $status" >&2
      fi
      exit 1
    fi
  fi
  actual=$(sha256sum "$partial" | cut -d ' ' -f 1)
  if [[ sha256:$actual != "$digest" ]]; then
    rm -f "$partial"
    echo "ollama-gpu: $digest of $name arrived with sha256 $actual; deleted it, the next run downloads it again" >&2
    exit 1
  fi
  mv "$partial" "$models/blobs/$blob"
  fetched=$((fetched + 1))
done <"$work/layers"

mkdir -p "$(dirname "$models/$MANIFEST_PATH")"
cp "$work/manifest" "$models/$MANIFEST_PATH.partial"
mv "$models/$MANIFEST_PATH.partial" "$models/$MANIFEST_PATH"
blob=$(model_blob "$work/layers")
link_model "$blob"
echo "ollama-gpu: changed: fetched $name ($fetched blobs downloaded, each checked against its sha256)"
echo "ollama-gpu: model file: blobs/$blob"
