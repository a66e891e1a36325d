"""The llama-server command line, rendered from the stack's settings as an argv list (no shell ever
reads it, so no value can be taken for code or split into two flags).

Knob truth: every flag here exists in the pinned build (tests/unit/test_llama_server_argv.py
checks each against that build's `--help` capture), and none is a no-op. A flag whose value is the
pinned build's own default changes nothing, so it is left out (BUILD_DEFAULTS, also checked against
the capture). Why each flag that remains changes something:

- --model, --alias: no default (the model and the name clients ask for).
- --ctx-size: the default 0 takes the model's training context; the stack's context is smaller.
  llama-server gives each of its --parallel slots ctx-size / parallel tokens (no unified KV once the
  slot count is set), so ctx-size is numCtx × numParallel: each request gets numCtx, as with Ollama.
- --parallel: the default -1 means 4 slots sharing a unified KV cache.
- --flash-attn on|off: the default is auto.
- --verbosity 4 with server.env.debug (default true, as OLLAMA_DEBUG for Ollama): libllama's own
  log, where the buffer-size lines the verification reads are, shows only at trace level (the
  default is 3, which the server prints at start); per request it adds some 25 lines of slot
  bookkeeping, no prompt text, and the log is rotated.
- --cache-type-k/-v: only when not f16, the default.
- placement fit: llama.cpp's --fit is on by default; --fit-target sets the VRAM it leaves free
  (server.env.gpuOverhead), left out when that equals the default margin. Placement nCpuMoe:
  --n-cpu-moe N keeps the experts of the first N layers on the CPU and every other tensor on the
  GPU (the default -ngl puts all layers there); --fit off skips the fit, which would load the
  model's metadata for a dry run at every start only to give up on the user's tensor overrides.
  A CPU-only stack has nothing to place, so neither is rendered there.
- model.parameters with a server-wide equivalent (numPredict → --n-predict, useMmap false →
  --load-mode none (read the weights into memory; b11312 has no --no-mmap, and its default "auto"
  maps the file), numBatch → --batch-size and --ubatch-size, which Ollama sets to the same figure,
  sampling defaults, threads, seed, main GPU), each only when set and not the build's default.
  numKeep is not rendered: --keep only acts when the context shifts, which llama-server leaves off.
"""

from typing import Any, Optional

from ollama_gpu.settings import Settings

# The pinned build's defaults for the flags rendered below, as `--help` prints them (b11312).
BUILD_DEFAULTS: dict[str, str] = {
    "--ctx-size": "0",
    "--parallel": "-1",
    "--flash-attn": "auto",
    "--cache-type-k": "f16",
    "--cache-type-v": "f16",
    "--fit": "on",
    "--fit-target": "1024",
    "--n-predict": "-1",
    "--verbosity": "3",
    "--load-mode": "auto",
    "--threads": "-1",
    "--batch-size": "2048",
    "--ubatch-size": "512",
    "--seed": "-1",
    "--top-k": "40",
    "--top-p": "0.95",
    "--min-p": "0.05",
    "--typical": "1.00",
    "--repeat-last-n": "64",
    "--temp": "0.80",
    "--repeat-penalty": "1.00",
    "--presence-penalty": "0.00",
    "--frequency-penalty": "0.00",
    "--main-gpu": "0",
}
# model.parameters (Ollama's names) that become a llama-server flag of the same meaning.
PARAMETER_FLAGS: dict[str, tuple[str, ...]] = {
    "num_predict": ("--n-predict",),
    "num_batch": ("--batch-size", "--ubatch-size"),
    "main_gpu": ("--main-gpu",),
    "num_thread": ("--threads",),
    "seed": ("--seed",),
    "top_k": ("--top-k",),
    "top_p": ("--top-p",),
    "min_p": ("--min-p",),
    "typical_p": ("--typical",),
    "repeat_last_n": ("--repeat-last-n",),
    "temperature": ("--temp",),
    "repeat_penalty": ("--repeat-penalty",),
    "presence_penalty": ("--presence-penalty",),
    "frequency_penalty": ("--frequency-penalty",),
}
MIB = 2**20


def server_arguments(settings: Settings, model_path: str) -> list[str]:
    """The argv after the image's entrypoint (/app/llama-server)."""
    env = settings.server.env
    parameters = settings.model.parameters
    flags: list[tuple[str, Optional[str]]] = [
        ("--model", model_path),
        ("--alias", settings.model.alias),
        ("--ctx-size", str(parameters.num_ctx * env.num_parallel)),
        ("--parallel", str(env.num_parallel)),
        ("--flash-attn", "on" if env.flash_attention else "off"),
        ("--cache-type-k", env.kv_cache_type),
        ("--cache-type-v", env.kv_cache_type),
        *_placement(settings),
    ]
    if env.debug:
        flags.append(("--verbosity", "4"))
    if parameters.use_mmap is False:
        flags.append(("--load-mode", "none"))
    for parameter, value in parameters.as_api().items():
        for flag in PARAMETER_FLAGS.get(parameter, ()):
            flags.append((flag, _number_text(value)))
    argv: list[str] = []
    for flag, value in flags:
        if value is not None and _is_default(flag, value):
            continue
        argv += [flag] if value is None else [flag, value]
    return argv


def _placement(settings: Settings) -> list[tuple[str, Optional[str]]]:
    if not settings.has_gpu:
        return []
    llama = settings.llama_server
    if llama.placement == "nCpuMoe":
        return [("--fit", "off"), ("--n-cpu-moe", str(llama.n_cpu_moe))]
    # Whole MiB, rounded up: the margin never shrinks below what the stack holds back.
    return [("--fit-target", str(-(-int(settings.server.env.gpu_overhead) // MIB)))]


def _number_text(value: Any) -> str:
    # 0.6 and 40 as typed, never 0.6000000001 or 40.0.
    return repr(value) if isinstance(value, float) else str(value)


def _is_default(flag: str, value: str) -> bool:
    default = BUILD_DEFAULTS.get(flag)
    if default is None:
        return False
    try:
        return float(default) == float(value)
    except ValueError:
        return default == value
