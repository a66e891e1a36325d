#!/usr/bin/env bash
# The GPU lab on a CUDA machine: builds the CUDA backend if needed, records the host, then sweeps
# each model through emulated card sizes (ollama_gpu/gpulab/sweep.py), within a time budget.
#
#   scripts/gpu-lab/run.sh OUT_DIR BUDGET_SECONDS MODEL:POINTS:SIZES [...]
#   e.g. scripts/gpu-lab/run.sh /tmp/lab 560 qwen3-30b-a3b-q8_0:a10,v100,full,14,8,a10/b2048:512,2048,8192
# POINTS: a10, v100 (the cards' free VRAM), full (the whole GPU), or a free VRAM in GiB to emulate;
# "/bN" runs that point with num_batch N instead of 512.
#
# Inputs, in LAB_DIR (default <repo>/.lab; scripts/gpu-lab/pack.sh fills it on the build machine;
# copy only LAB_DIR/carry to the GPU machine, so a rerun there keeps the unpacked server and build):
#   carry/ollama-<ver>.tar.xz   bin/ollama + lib/ollama CPU backends (scripts/dev/build-ollama.sh)
#   carry/ollama-cmake.tar.xz   Ollama's CMake project, for the CUDA backend
#   carry/ggml-cuda.tar.xz      optional: a CUDA backend an earlier run built (skips the build)
# Outputs in OUT_DIR: host.json, one <model>.json per spec, logs.tar.gz (server logs,
# build log, timeline), and ggml-cuda.tar.xz.part-* when this run built the backend (join the parts
# into LAB_DIR/carry/ggml-cuda.tar.xz to skip the build next time).
# PYTHON names the interpreter (needs numpy; torch for the bandwidth figures).
# LAB_SWEEP_ARGS adds arguments to every sweep (tests use "--scale-blocks 1 --num-ctx 2048").
# Each model gets an equal share of the budget left when it starts; a sweep stops measuring at its
# deadline and keeps what it has.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OLLAMA_VERSION="$(sed -n 's/^OLLAMA_VERSION=//p' "$REPO_ROOT/pins.env")"
LAB_DIR="${LAB_DIR:-$REPO_ROOT/.lab}"
PYTHON="${PYTHON:-python3}"
OUT_DIR="$1"
BUDGET="$2"
shift 2
started="$(date +%s)"
end=$((started + BUDGET))
product="$LAB_DIR/ollama-$OLLAMA_VERSION"
logs="${TMPDIR:-/tmp}/gpu-lab-logs"
mkdir -p "$logs"
say() { echo "gpu-lab +$(($(date +%s) - started))s: $*" | tee -a "$logs/timeline.txt" >&2; }

if [[ ! -x "$product/bin/ollama" ]]; then
  tar -xJf "$LAB_DIR/carry/ollama-$OLLAMA_VERSION.tar.xz" -C "$LAB_DIR"
fi
nvcc_dir="$(dirname "$(command -v nvcc)")"
cuda_libs="$(cd "$nvcc_dir/.." && pwd)/lib64"
export_backend=""
if ! compgen -G "$product/lib/ollama/cuda_v*/libggml-cuda.so" >/dev/null; then
  if [[ -f "$LAB_DIR/carry/ggml-cuda.tar.xz" ]]; then
    say "using the carried CUDA backend"
    tar -xJf "$LAB_DIR/carry/ggml-cuda.tar.xz" -C "$product/lib/ollama"
    for dir in "$product"/lib/ollama/cuda_v*; do
      cp -P "$cuda_libs"/libcudart.so* "$cuda_libs"/libcublas.so* "$cuda_libs"/libcublasLt.so* "$dir/"
    done
  else
    # The first model's GGUF is written meanwhile: disk work beside a compile.
    IFS=: read -r first_model _ <<<"$1"
    (cd "$REPO_ROOT" && "$PYTHON" -m ollama_gpu.gpulab.sweep --ollama "$product/bin/ollama" --model "$first_model" \
      --out /dev/null --gguf-only >"$logs/gguf-ahead.log" 2>&1) &
    ahead_pid=$!
    say "building the CUDA backend"
    mkdir -p "$LAB_DIR/ollama-cmake"
    tar -xJf "$LAB_DIR/carry/ollama-cmake.tar.xz" -C "$LAB_DIR/ollama-cmake"
    "$REPO_ROOT/scripts/gpu-lab/build-cuda.sh" "$LAB_DIR/ollama-cmake" "$product" "$LAB_DIR/build-cuda" \
      >"$logs/build-cuda.log" 2>&1 || { tail -n 40 "$logs/build-cuda.log" >&2; exit 1; }
    export_backend=yes
    wait "$ahead_pid" || say "writing $first_model ahead failed; the sweep writes it"
  fi
fi
say "CUDA backend ready: $(cd "$product/lib/ollama" && ls -d cuda_v*)"
if [[ -n "$export_backend" ]]; then
  (cd "$product/lib/ollama" && tar -cf - cuda_v*/libggml-cuda.so | xz -T0 -6 | split -b 15M - "$OUT_DIR/ggml-cuda.tar.xz.part-") &
fi

cd "$REPO_ROOT"
PYTHONUNBUFFERED=1 "$PYTHON" -m ollama_gpu.gpulab.hostinfo >"$OUT_DIR/host.json"
say "host recorded"
read -r -a sweep_args <<<"${LAB_SWEEP_ARGS:-}"
remaining=$#
for spec in "$@"; do
  IFS=: read -r model points sizes <<<"$spec"
  now="$(date +%s)"
  deadline=$((now + (end - now) / remaining))
  remaining=$((remaining - 1))
  say "$model until +$((deadline - started))s"
  PYTHONUNBUFFERED=1 "$PYTHON" -m ollama_gpu.gpulab.sweep --ollama "$product/bin/ollama" --model "$model" \
    --points "$points" --sizes "$sizes" --deadline "$deadline" --host-info "$OUT_DIR/host.json" \
    --out "$OUT_DIR/$model.json" --log-dir "$logs/$model" "${sweep_args[@]}" || say "$model sweep failed"
done
wait
tar -czf "$OUT_DIR/logs.tar.gz" -C "$(dirname "$logs")" "$(basename "$logs")"
say "done"
