#!/usr/bin/env bash
# Creates the project virtualenv on first use so that every entry point (make plan, make test,
# scripts/plan, scripts/smoke, scripts/bench) works right after cloning with no other step.
# The stamp holds a hash of the dependency files: editing them reinstalls, otherwise this is instant.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
venv="$repo/.venv"
stamp="$venv/.deps-stamp"
wanted=$(cat "$repo/requirements.txt" "$repo/constraints.txt" | sha256sum | cut -d' ' -f1)

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
  exit 0
fi

python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  -r "$repo/requirements.txt" -c "$repo/constraints.txt" >&2
echo "$wanted" > "$stamp"
