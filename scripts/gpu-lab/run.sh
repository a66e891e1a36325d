#!/usr/bin/env bash
# The GPU lab on a CUDA machine: builds the CUDA backends it needs, records the host, then sweeps
# each model through emulated card sizes, within a time budget: with the pinned Ollama
# (ollama_gpu/gpulab/sweep.py) or, for a spec that starts with "llama@", with llama.cpp's
# llama-server (ollama_gpu/gpulab/llama_sweep.py).
#
#   scripts/gpu-lab/run.sh OUT_DIR BUDGET_SECONDS [llama@]MODEL:POINTS:SIZES[:SHARE] [...]
#   e.g. scripts/gpu-lab/run.sh /tmp/lab 560 qwen3-30b-a3b-q8_0:a10,v100,full,14,8,a10/b2048:512,2048,8192
#        scripts/gpu-lab/run.sh /tmp/lab 560 llama@qwen3-30b-a3b-q8_0:a10/fit,a10/n20:1024,4096,16384
# Ollama POINTS: a10, v100 (the cards' free VRAM), full (the whole GPU), or a free VRAM in GiB to
# emulate; "/bN" runs that point with num_batch N instead of 512. llama-server POINTS: the same
# cards, then "/fit" or "/nN" (--n-cpu-moe N), optionally "/mmap".
# SHARE weighs a spec's part of the budget (default 1). A model's GGUF is written once and kept
# while a later spec still needs it.
#
# Inputs, in LAB_DIR (default <repo>/.lab; scripts/gpu-lab/pack.sh fills it on the build machine;
# copy only LAB_DIR/carry to the GPU machine, so a rerun there keeps the unpacked server and build):
#   carry/ollama-<ver>.tar.xz   bin/ollama + lib/ollama CPU backends (scripts/dev/build-ollama.sh)
#   carry/ollama-cmake.tar.xz   Ollama's CMake project, for the CUDA backend
#   carry/ggml-cuda.tar.xz      optional: a CUDA backend an earlier run built (skips the build)
#   carry/llama-cpp-src.tar.xz  llama.cpp's source at the pinned build, for llama-server
#   carry/llama-cuda.tar.xz     optional: the llama-server an earlier run built (skips the build)
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

wants_ollama="" wants_llama=""
for spec in "$@"; do
  if [[ "$spec" == llama@* ]]; then wants_llama=yes; else wants_ollama=yes; fi
done

llama_server="$LAB_DIR/build-llama-cuda/bin/llama-server"
llama_build_pid=""
if [[ -n "$wants_llama" && ! -x "$llama_server" && -f "$LAB_DIR/carry/llama-cuda.tar.xz" ]]; then
  say "using the carried llama-server build"
  tar -xJf "$LAB_DIR/carry/llama-cuda.tar.xz" -C "$LAB_DIR"
fi
if [[ -n "$wants_llama" && ! -x "$llama_server" ]]; then
  say "building llama-server (CUDA)"
  mkdir -p "$LAB_DIR/llama-cpp-src"
  tar -xJf "$LAB_DIR/carry/llama-cpp-src.tar.xz" -C "$LAB_DIR/llama-cpp-src"
  # The build comes back as llama-cuda.tar.xz.part-* (join them into LAB_DIR/carry/llama-cuda.tar.xz
  # and the next machine skips the build).
  { "$REPO_ROOT/scripts/gpu-lab/build-llama-cuda.sh" "$LAB_DIR/llama-cpp-src" "$LAB_DIR/build-llama-cuda" &&
    tar -cf - -C "$LAB_DIR" build-llama-cuda/bin | xz -T0 -6 | split -b 15M - "$OUT_DIR/llama-cuda.tar.xz.part-"
  } >"$logs/build-llama-cuda.log" 2>&1 &
  llama_build_pid=$!
fi

if [[ -n "$wants_ollama" ]]; then
  if [[ ! -x "$product/bin/ollama" ]]; then
    tar -xJf "$LAB_DIR/carry/ollama-$OLLAMA_VERSION.tar.xz" -C "$LAB_DIR"
  fi
  nvcc_dir="$(dirname "$(command -v nvcc)")"
  cuda_libs="$(cd "$nvcc_dir/.." && pwd)/lib64"
  if ! compgen -G "$product/lib/ollama/cuda_v*/libggml-cuda.so" >/dev/null; then
    if [[ -f "$LAB_DIR/carry/ggml-cuda.tar.xz" ]]; then
      say "using the carried CUDA backend"
      tar -xJf "$LAB_DIR/carry/ggml-cuda.tar.xz" -C "$product/lib/ollama"
      for dir in "$product"/lib/ollama/cuda_v*; do
        cp -P "$cuda_libs"/libcudart.so* "$cuda_libs"/libcublas.so* "$cuda_libs"/libcublasLt.so* "$dir/"
      done
    else
      say "building Ollama's CUDA backend"
      mkdir -p "$LAB_DIR/ollama-cmake"
      tar -xJf "$LAB_DIR/carry/ollama-cmake.tar.xz" -C "$LAB_DIR/ollama-cmake"
      "$REPO_ROOT/scripts/gpu-lab/build-cuda.sh" "$LAB_DIR/ollama-cmake" "$product" "$LAB_DIR/build-cuda" \
        >"$logs/build-cuda.log" 2>&1 || { tail -n 40 "$logs/build-cuda.log" >&2; exit 1; }
      (cd "$product/lib/ollama" && tar -cf - cuda_v*/libggml-cuda.so | xz -T0 -6 |
        split -b 15M - "$OUT_DIR/ggml-cuda.tar.xz.part-") &
    fi
  fi
  say "Ollama's CUDA backend ready: $(cd "$product/lib/ollama" && ls -d cuda_v*)"
fi

cd "$REPO_ROOT"
PYTHONUNBUFFERED=1 "$PYTHON" -m ollama_gpu.gpulab.hostinfo >"$OUT_DIR/host.json"
say "host recorded"
read -r -a sweep_args <<<"${LAB_SWEEP_ARGS:-}"
specs=("$@")
total_share=0
for spec in "${specs[@]}"; do
  IFS=: read -r _ _ _ share <<<"$spec"
  total_share=$((total_share + ${share:-1}))
done
for index in "${!specs[@]}"; do
  spec="${specs[$index]}"
  IFS=: read -r model points sizes share <<<"$spec"
  share="${share:-1}"
  engine=ollama
  if [[ "$model" == llama@* ]]; then engine=llama-server model="${model#llama@}"; fi
  # Ollama sweeps before the first llama-server one overlap the build (their runs record the load).
  if [[ "$engine" == llama-server && -n "$llama_build_pid" ]]; then
    say "waiting for the llama-server build"
    wait "$llama_build_pid" || { tail -n 40 "$logs/build-llama-cuda.log" >&2; exit 1; }
    llama_build_pid=""
    say "llama-server built"
  fi
  keep=()
  for later in "${specs[@]:index+1}"; do
    later_model="${later%%:*}"
    [[ "${later_model#llama@}" == "$model" ]] && keep=(--keep-gguf)
  done
  now="$(date +%s)"
  deadline=$((now + (end - now) * share / total_share))
  total_share=$((total_share - share))
  say "$engine $model until +$((deadline - started))s"
  common=(--model "$model" --points "$points" --sizes "$sizes" --deadline "$deadline"
    --host-info "$OUT_DIR/host.json" --log-dir "$logs/$model" "${keep[@]}" "${sweep_args[@]}")
  if [[ "$engine" == ollama ]]; then
    PYTHONUNBUFFERED=1 "$PYTHON" -m ollama_gpu.gpulab.sweep --ollama "$product/bin/ollama" \
      --out "$OUT_DIR/$model.json" "${common[@]}" || say "$model sweep failed"
  else
    PYTHONUNBUFFERED=1 "$PYTHON" -m ollama_gpu.gpulab.llama_sweep --llama-server "$llama_server" \
      --out "$OUT_DIR/$model.llama-server.json" "${common[@]}" || say "llama-server $model sweep failed"
  fi
done
wait
tar -czf "$OUT_DIR/logs.tar.gz" -C "$(dirname "$logs")" "$(basename "$logs")"
say "done"
