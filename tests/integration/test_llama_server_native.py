"""The pinned llama-server build, built here for the CPU, run natively on the tiny model: its help
text is the committed capture the flag checks read, it takes the flags a stack passes, serves the
alias over the OpenAI and native APIs, and logs the buffer sizes that verification compares with
the plan."""

import re
import subprocess
from pathlib import Path

import pytest
from gguf import GGUFReader

from ollama_gpu.llama_server_flags import help_path, pinned_build, pinned_flags
from ollama_gpu.pins import read_pins
from tests.integration import harness, tiny_model
from tests.integration.llama_server import llama_server_binary, running_llama_server  # noqa: F401 (the fixture)

pytestmark = pytest.mark.integration

ALIAS = "tiny:llama"
CONTEXT = 4096
SLOTS = 2
# The flags a stack's llama-server gets, in their CPU form: no GPU here, so -ngl and --n-cpu-moe
# change nothing on this machine, but the build must accept them; the GPU lab measures their effect.
# --verbosity 4: the library's own info lines, the buffer sizes among them, are logged at level 4
# (common/log.cpp maps GGML_LOG_LEVEL_INFO to LOG_LEVEL_TRACE); the default, 3, hides them.
STACK_FLAGS = [
    "--ctx-size", str(CONTEXT), "--flash-attn", "on", "--cache-type-k", "q8_0", "--cache-type-v", "q8_0",
    "--parallel", str(SLOTS), "--alias", ALIAS, "--n-gpu-layers", "99", "--n-cpu-moe", "2", "--fit", "off",
    "--verbosity", "4",
]  # fmt: skip

# The buffer-size lines llama.cpp logs as it loads (src/llama-model.cpp, llama-kv-cache.cpp and
# llama-context.cpp of the pinned build): one per buffer, named by the backend buffer type, after
# the log prefix "<minutes>.<ss>.<ms>.<us> I " (common/log.cpp), e.g.
#   0.00.036.457 I load_tensors:   CPU_Mapped model buffer size =     2.73 MiB
BUFFER_LINE = re.compile(
    r"^\d+\.\d{2}\.\d{3}\.\d{3} I (?P<function>\w+): +(?P<buffer>\S+) +(?P<kind>model|KV|compute) buffer size"
    r" = +(?P<mib>\d+\.\d{2}) MiB$",
    re.MULTILINE,
)
Q8_0_BYTES_PER_VALUE = 34 / 32  # a q8_0 block: 32 int8 values and one f16 scale


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model.write_tiny_gguf(tmp_path_factory.mktemp("llama-server") / "tiny.gguf")


def test_help_capture_is_what_the_pinned_build_prints(llama_server_binary: Path, tmp_path: Path):
    capture = harness.run_dev_script("capture-llama-server-help.sh", str(tmp_path / "help.txt"))
    committed = help_path(pinned_build())
    assert Path(capture).read_text() == committed.read_text(), (
        f"{committed} differs from the built llama-server's --help: rerun scripts/dev/capture-llama-server-help.sh"
    )


def test_version_is_the_pinned_build(llama_server_binary: Path):
    pins = read_pins()
    version = subprocess.run([llama_server_binary, "--version"], capture_output=True, text=True, check=True)
    assert f"(build {pins['LLAMA_CPP_BUILD']}, commit {pins['LLAMA_CPP_COMMIT'][:9]})" in version.stderr + version.stdout


@pytest.mark.parametrize("extra", [[], ["--no-such-flag"], ["--alias", "a", "--ctx_size", "64"], ["--fit", "off", "on"]])
def test_the_flag_table_accepts_exactly_what_the_build_accepts(llama_server_binary: Path, extra: list[str]):
    """--version, last, exits 0 only once every argument before it has been parsed (common/arg.cpp
    runs each handler in order and rejects an unknown argument at once)."""
    args = [*STACK_FLAGS, *extra]
    env = {"PATH": "/usr/bin:/bin"}
    parsed = subprocess.run([llama_server_binary, *args, "--version"], capture_output=True, env=env, check=False)
    assert (parsed.returncode == 0) == (pinned_flags().unknown_options(args) == []), parsed.stderr


def test_serves_the_alias_with_the_stack_flags_and_logs_its_buffers(
    llama_server_binary: Path, tiny_gguf: Path, tmp_path: Path
):
    with running_llama_server(llama_server_binary, tiny_gguf, STACK_FLAGS, tmp_path / "server.log") as server:
        assert server.get("/health") == {"status": "ok"}
        assert [model["id"] for model in server.get("/v1/models")["data"]] == [ALIAS]
        prompt = list(range(300, 364))
        completion = server.post("/completion", {"prompt": prompt, "n_predict": 8, "cache_prompt": False})
        props = server.get("/props")
        log = server.log

    timings = completion["timings"]
    assert timings["prompt_n"] == len(prompt)
    assert 0 < timings["predicted_n"] <= 8
    assert timings["prompt_ms"] > 0 and timings["predicted_ms"] > 0
    assert props["total_slots"] == SLOTS

    buffers = {(match["kind"], match["buffer"]): float(match["mib"]) for match in BUFFER_LINE.finditer(log)}
    assert {kind for kind, _ in buffers} == {"model", "KV", "compute"}, log
    # Each flag took effect, as the context's own log lines say; --n-cpu-moe works through tensor
    # overrides (common/arg.cpp), which the loader reports even with no GPU to keep the rest on.
    for line in ("llama_context: n_ctx                 = 4096", "llama_context: n_seq_max             = 2",
                 "llama_context: flash_attn            = enabled", "K (q8_0):", "V (q8_0):",
                 "llama_model_loader: tensor overrides to CPU are used"):  # fmt: skip
        assert line in log, line
    # K and V of every layer for the whole context (split between the slots), in q8_0.
    kv_width = tiny_model.HEAD_COUNT_KV * tiny_model.HEAD_DIM
    expected_kv = 2 * tiny_model.BLOCK_COUNT * CONTEXT * kv_width * Q8_0_BYTES_PER_VALUE / 2**20
    assert buffers[("KV", "CPU")] == pytest.approx(expected_kv, abs=0.01)
    # The weights as written, all in the memory-mapped file (no GPU to offload to).
    weights = sum(int(tensor.n_bytes) for tensor in GGUFReader(tiny_gguf).tensors) / 2**20
    assert buffers[("model", "CPU_Mapped")] == pytest.approx(weights, abs=0.01)
