"""Both GPU-lab sweeps end to end on this machine's CPU: a scaled-down lab model written once, swept
by the pinned Ollama and then by llama-server from the same GGUF, and the results read back by the
placement parser and the engines table. No GPU here, so the points are "full" (nothing held back)
and the figures are not looked at; what is checked is that every request is recorded with the
fields the comparisons read, and that the GGUF is kept for the second sweep and removed after it."""

import json
from pathlib import Path

from ollama_gpu.gpulab import engines, llama_sweep, sweep
from ollama_gpu.gpulab.results import load, measured_placement
from tests.integration.llama_server import llama_server_binary  # noqa: F401 (the fixture)
from tests.integration.native_server import _build_server

COMMON = ["--model", "qwen3-30b-a3b-q8_0", "--sizes", "64,96", "--decode-tokens", "4", "--num-ctx", "1024",
          "--scale-blocks", "1"]


def test_both_engines_sweep_one_gguf_and_tabulate(tmp_path: Path, llama_server_binary: Path):  # noqa: F811
    models, logs = tmp_path / "models", tmp_path / "logs"
    shared = [*COMMON, "--models-dir", str(models), "--log-dir", str(logs), "--host-info", str(_host_info(tmp_path))]
    ollama_out, llama_out = tmp_path / "ollama.json", tmp_path / "llama.json"

    assert sweep.main([*shared, "--ollama", str(_build_server()), "--points", "full", "--out", str(ollama_out),
                       "--keep-gguf"]) == 0
    # The store also holds the config blob Ollama's /api/create wrote; the GGUF is the large one.
    gguf = max((models / "blobs").glob("sha256-*"), key=lambda path: path.stat().st_size)
    assert gguf.read_bytes()[:4] == b"GGUF", "the GGUF is kept for the llama-server sweep"
    assert llama_sweep.main([*shared, "--llama-server", str(llama_server_binary), "--points", "full/fit,full/n1",
                             "--out", str(llama_out)]) == 0
    assert not gguf.exists(), "the last sweep removes it"

    ollama, llama = load(ollama_out), load(llama_out)
    [ollama_run] = ollama["runs"]
    assert "error" not in ollama_run and measured_placement(ollama_run["log_lines"]) is not None
    assert llama["engine"] == "llama-server" and "build 11312" in llama["llama_server_version"]
    for run in [ollama_run, *llama["runs"]]:
        assert "error" not in run
        assert [r["requested_prompt_tokens"] for r in run["requests"]] == [64, 96]
        assert all(r["prompt_tokens"] >= 64 and r["eval_count"] == 4 and r["decode_tokens_per_s"] for r in run["requests"])
    fit, explicit = llama["runs"]
    assert "--fit" in fit["arguments"] and explicit["arguments"][explicit["arguments"].index("--n-cpu-moe") + 1] == "1"
    assert any("buffer size" in line for line in fit["log_lines"])

    rows = engines.table(engines.engine_runs(ollama) + engines.engine_runs(llama))
    assert len(rows) == 2 + 3
    assert any("| llama-server |  | --n-cpu-moe 1 |" in row and "(×" in row for row in rows)


def _host_info(tmp_path: Path) -> Path:
    """The sweeps embed the host record; measuring it (bandwidth runs) is the GPU machine's work."""
    path = tmp_path / "host.json"
    path.write_text(json.dumps({"recorded": "by the test"}))
    return path
