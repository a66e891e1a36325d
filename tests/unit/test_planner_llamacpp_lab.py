"""The llama-server plan against the GPU lab's llama-server runs (any lab/results JSON file whose
``engine`` is ``llama-server``, as ollama_gpu/gpulab/llama_sweep.py writes them).

Each run carries the server's ``arguments`` (the flags after the binary), its ``log_lines`` (the
buffer-size lines) and ``gpu_free_before``; the file's ``model`` names a lab model
(ollama_gpu/gpulab/models.py). A new run is data: commit the file and this test compares it.
A ``--fit`` run is planned from the free VRAM the lab read before the start; the server fits
after creating its CUDA context, which takes some of it, so the test accepts the fit's choice for
a context of up to FIT_CONTEXT_ALLOWANCE.
"""

import json
from pathlib import Path

import pytest

from ollama_gpu.gpulab.compare import lab_geometry
from ollama_gpu.planner.catalog import catalog_geometry
from ollama_gpu.planner.llamacpp_log import buffer_figures, measured_buffers, planned_for_args, settings_from_args
from ollama_gpu.planner.units import MIB

RESULTS = Path(__file__).resolve().parents[2] / "lab" / "results"


FIT_CONTEXT_ALLOWANCE = 1024 * MIB


def lab_runs():
    for path in sorted(RESULTS.rglob("*.json")):
        results = json.loads(path.read_text())
        if results.get("engine") != "llama-server":
            continue
        for run in results["runs"]:
            if run.get("log_lines") and arguments(run) and measured_buffers(run["log_lines"]):
                yield pytest.param(results, run, id=f"{path.name}:{run['point']}")


def arguments(run):
    return run.get("arguments") or run.get("args")


def compare(geometry, run, context=0):
    args = settings_from_args(arguments(run))
    free = run.get("gpu_free_before")
    planned = planned_for_args(geometry, args, None if free is None else free - context)
    return buffer_figures(planned, measured_buffers(run["log_lines"]))


@pytest.mark.parametrize(("results", "run"), list(lab_runs()))
def test_lab_run_buffers_match_the_plan(results, run):
    geometry = lab_geometry(results)
    fits = settings_from_args(arguments(run)).n_cpu_moe is None
    contexts = range(0, FIT_CONTEXT_ALLOWANCE + 1, 64 * MIB) if fits else (0,)
    attempts = [compare(geometry, run, context) for context in contexts]
    if any(all(f.ok for f in figures) for figures in attempts):
        return
    off = [f"{f.name}: planned {f.planned / MIB:.1f} MiB, measured {f.measured / MIB:.1f} MiB"
           for f in attempts[0] if not f.ok]
    pytest.fail("; ".join(off))


def test_a_run_in_the_lab_format_is_compared():
    """The plumbing, on a run written by hand from the buffer lines the pinned build prints
    (format strings of llama-model.cpp, llama-kv-cache.cpp, llama-context.cpp) with the A10
    figures of test_planner_llamacpp.py: 28 blocks' experts on the GPU."""
    run = {
        "point": "a10/n20",
        "arguments": ["-m", "/models/m.gguf", "-c", "32768", "-np", "1", "-fa", "on", "-ngl", "999", "--n-cpu-moe", "20",
                 "--load-mode", "none"],
        "gpu_free_before": None,
        "log_lines": [
            "load_tensors:        CUDA0 model buffer size = 18418.11 MiB",
            "load_tensors:    CUDA_Host model buffer size = 12555.30 MiB",
            "llama_kv_cache:      CUDA0 KV buffer size =  3072.00 MiB",
            "llama_context:      CUDA0 compute buffer size =   400.00 MiB",
            "llama_context:  CUDA_Host compute buffer size =    36.00 MiB",
        ],
    }
    figures = {f.name: f for f in compare(catalog_geometry("qwen3:30b-a3b-thinking-2507-q8_0"), run)}
    assert all(f.ok for f in figures.values()), figures
    run["log_lines"][0] = "load_tensors:        CUDA0 model buffer size = 19030.00 MiB"  # one block more on the GPU
    assert not {f.name: f for f in compare(catalog_geometry("qwen3:30b-a3b-thinking-2507-q8_0"), run)}["model GPU"].ok
