"""The typed stack configuration: every key a user can set under the `ollama-gpu:` namespace.

Models use camelCase aliases so the names here are exactly the names in Pulumi.<stack>.yaml.
Cross-field rules raise `SettingProblem`, which names the key it is about and the fix, so that
config_loader can turn any failure into one message a user can act on.

Strictness is per kind of value, following what `pulumi config set --path` stores: it writes
`true`/`false` as booleans and integers as numbers, everything else as a string. So booleans and
integers must be exactly that (`port: true` or `allowPublicBind: 'yes'` is refused, not coerced),
while a decimal may also arrive as its text ('0.9'). Every value that reaches a shell, a command
line or a request is checked against the grammar of the program that reads it (ollama_gpu.names,
go_duration, ssh_keys), and numbers against the range that program parses.
"""

import ipaddress
import re
from typing import Annotated, Any, Literal, Optional
from urllib.parse import urlsplit

from pydantic import (
    BaseModel, BeforeValidator, ByteSize, ConfigDict, Field, SecretStr, Strict, field_validator, model_validator,
)
from pydantic.alias_generators import to_camel

from ollama_gpu import knobs
from ollama_gpu.go_duration import parse_nanoseconds
from ollama_gpu.names import (
    docker_name_problem, host_address_problem, image_is_pinned, image_reference_problem, ollama_full_name,
    ollama_name_problem, user_name_problem,
)
from ollama_gpu.gateway_config import (
    acme_directory_problem, api_key_problem, email_problem, is_ip_address, pem_certificate_problem, site_name_problem,
)
from ollama_gpu.pins import CADDY_IMAGE, LITELLM_IMAGE, LLAMA_SERVER_IMAGE, OLLAMA_IMAGE
from ollama_gpu.ssh_keys import host_key_problem, looks_like_private_key


class Hidden:
    """Stands for a value that must not be printed back (a private key pasted in the wrong place)."""

    def __repr__(self) -> str:
        return "(not shown: it looks like a private key)"


HIDDEN = Hidden()
# What offline reads of a stack file (make plan) see in place of a value they cannot decrypt.
UNDECRYPTED_SECRET = "[secret]"


class _NotShownKey:
    def __repr__(self) -> str:
        return "(an API key, not shown)"


NOT_SHOWN_KEY = _NotShownKey()


class SettingProblem(ValueError):
    """A rule about one config key, with the fix; `key` is relative to the model raising it."""

    def __init__(self, key: str, value: Any, problem: str, fix: str):
        super().__init__(problem)
        self.key, self.value, self.problem, self.fix = key, value, problem, fix


class _Section(BaseModel):
    # coerce_numbers_to_str: `pulumi config set --path model.alias 2507` stores the number 2507.
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, frozen=True, allow_inf_nan=False, coerce_numbers_to_str=True,
    )


# Ollama's options are Go ints that its runners hand to C as int32 (llama/llama.go, runner/*).
INT32_MAX = 2**31 - 1
# Sampling options are Go float32.
FLOAT32_MAX = 3.4028234663852886e38
GIB = 2**30


def _not_bool(value: Any) -> Any:
    # bool is an int to Python; `port: true` must not become port 1.
    if isinstance(value, bool):
        raise SettingProblem("", value, "is a boolean, not a number", "write a number")
    return value


def _size_input(value: Any) -> Any:
    _not_bool(value)
    if isinstance(value, float):
        raise SettingProblem("", value, "is not a whole number of bytes", "write bytes as an integer or with a unit, e.g. '22.5GiB'")
    return value


Int = Annotated[int, Strict()]
Bool = Annotated[bool, Strict()]
Float = Annotated[float, BeforeValidator(_not_bool)]
Size = Annotated[ByteSize, BeforeValidator(_size_input)]


def _control_character(text: str) -> Optional[str]:
    found = next((c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0), None)
    return None if found is None else f"U+{ord(found):04X}"


def _plain_text(value: str) -> str:
    """For values that end up in an environment entry, a file or a command line."""
    control = _control_character(value)
    if control:
        raise SettingProblem("", value, f"holds the control character {control}", "remove it")
    return value


def _bounded_size(value: ByteSize, smallest: int, largest: int, what: str) -> ByteSize:
    if not smallest <= value <= largest:
        raise SettingProblem(
            "", int(value), f"is outside {ByteSize(smallest).human_readable()}–{ByteSize(largest).human_readable()}",
            f"write {what}, e.g. '22.5GiB'",
        )
    return value


def _go_duration(value: str, *, at_least_seconds: float = 0, allow_negative: bool = False) -> str:
    """Ollama and Pulumi parse these with Go's time.ParseDuration; anything else Ollama silently
    replaces with its default."""
    nanoseconds = parse_nanoseconds(value)
    if nanoseconds is None:
        raise SettingProblem("", value, "is not a Go duration, or is longer than Go's 2562047h",
                             "write it like '5m', '90s' or '1h30m'")
    if nanoseconds < 0 and not allow_negative:
        raise SettingProblem("", value, "is negative", "write a positive duration like '15m'")
    if 0 <= nanoseconds < at_least_seconds * 1e9:
        raise SettingProblem("", value, f"is shorter than {at_least_seconds:g}s", "write a duration like '15m'")
    return value


def duration_seconds(text: str) -> float:
    nanoseconds = parse_nanoseconds(text)
    assert nanoseconds is not None, f"{text!r} was validated as a Go duration"
    return nanoseconds / 1e9


class HostSettings(_Section):
    """The GPU VM, reached over SSH. Absent for a stack that drives the local Docker engine."""

    address: str = Field(description="IP address or DNS name of the VM.")
    user: str = Field("root", description="SSH login; host prep runs through `sudo -n` when not root.")
    port: Int = Field(22, ge=1, le=65535, description="SSH port.")
    host_key: str = Field(
        description="The VM's SSH host public key ('ssh-ed25519 AAAA...'), pinned so a "
        "man-in-the-middle cannot receive the deploy. Read it with `ssh-keyscan -t ed25519 HOST`."
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        problem = host_address_problem(value)
        if problem:
            raise SettingProblem("", value, problem, "write the VM's IP address (203.0.113.10, 2001:db8::10) or DNS name")
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        problem = user_name_problem(value)
        if problem:
            raise SettingProblem("", value, problem, "write the VM's login, e.g. ubuntu")
        return value

    @field_validator("host_key")
    @classmethod
    def _host_key(cls, value: str) -> str:
        if looks_like_private_key(value):
            raise SettingProblem(
                "", HIDDEN, "holds a private key; it belongs nowhere in the stack file",
                "replace it with the VM's public host key (`ssh-keyscan -t ed25519 HOST`), and treat that private key as leaked",
            )
        problem = host_key_problem(value.strip())
        if problem:
            raise SettingProblem(
                "", value, problem, "paste one line of `ssh-keyscan -t ed25519 HOST` without the host name",
            )
        return value.strip()


class HardwareSettings(_Section):
    """What the planner assumes about the machine; unset values come from the GPU profile."""

    gpu_free_vram: Optional[Size] = Field(None, description="VRAM Ollama sees as free, e.g. '22.5GiB' (512MiB–1TiB).")
    gpu_free_vram_per_gpu: Optional[list[Size]] = Field(
        None, min_length=1, max_length=12,
        description="Free VRAM of each GPU in CUDA order on a multi-GPU host, e.g. ['22.5GiB', '22.5GiB']; "
        "its length is the GPU count. Replaces gpuFreeVram.",
    )
    gpu_bandwidth_gbps: Optional[Float] = Field(None, gt=0, le=100_000, description="GPU memory bandwidth, GB/s.")
    host_ram: Optional[Size] = Field(None, description="Host RAM, e.g. '116GB' (1GiB–64TiB).")
    host_ram_bandwidth_gbps: Optional[Float] = Field(None, gt=0, le=100_000, description="Host RAM bandwidth, GB/s.")
    prefill_tokens_per_second: Optional[Float] = Field(
        None, gt=0, le=10_000_000,
        description="Measured prompt tokens/s (scripts/bench prints it); replaces the derived prefill in the context budget.",
    )

    @field_validator("gpu_free_vram")
    @classmethod
    def _vram(cls, value: Optional[ByteSize]) -> Optional[ByteSize]:
        return value if value is None else _bounded_size(value, 512 * 2**20, 2**40, "the VRAM free on one GPU")

    @field_validator("gpu_free_vram_per_gpu")
    @classmethod
    def _vram_per_gpu(cls, value: Optional[list[ByteSize]]) -> Optional[list[ByteSize]]:
        if value is None:
            return None
        return [_bounded_size(free, 512 * 2**20, 2**40, "the VRAM free on one GPU") for free in value]

    @model_validator(mode="after")
    def _one_vram_figure(self) -> "HardwareSettings":
        if self.gpu_free_vram is not None and self.gpu_free_vram_per_gpu is not None:
            raise SettingProblem(
                "gpuFreeVramPerGpu", self.gpu_free_vram_per_gpu, "and gpuFreeVram are both set",
                "keep gpuFreeVramPerGpu (one figure per GPU) and remove gpuFreeVram",
            )
        return self

    @field_validator("host_ram")
    @classmethod
    def _ram(cls, value: Optional[ByteSize]) -> Optional[ByteSize]:
        return value if value is None else _bounded_size(value, GIB, 64 * 2**40, "the host's RAM")


def _env_value_input(value: Any) -> Any:
    # `pulumi config set --path` stores true/false as YAML booleans; numbers become text anyway.
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


EnvValue = Annotated[str, BeforeValidator(_env_value_input)]

# What OLLAMA_ORIGINS entries look like: scheme://host[:port], a leading `*.` label allowed.
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?|[a-z][a-z0-9+.-]*://\*", re.ASCII)


def origin_is_wildcard(origin: str) -> bool:
    """True when the entry admits pages from any site: `*`, `http://*`, or `*.` on a bare top-level domain."""
    host = origin.partition("://")[2]
    return origin == "*" or host.startswith("*") and host.count(".") < 2


class ServerEnv(_Section):
    """Ollama server tuning; each field becomes one OLLAMA_* variable the pinned version reads."""

    flash_attention: Bool = Field(description="OLLAMA_FLASH_ATTENTION; needed for a quantized KV cache.")
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = Field(description="OLLAMA_KV_CACHE_TYPE.")
    gpu_overhead: Size = Field(description="OLLAMA_GPU_OVERHEAD: VRAM held back from layer placement.")
    keep_alive: str = Field(description="OLLAMA_KEEP_ALIVE: a Go duration; -1 (or any negative) keeps the model loaded for good.")
    num_parallel: Int = Field(ge=1, le=16, description="OLLAMA_NUM_PARALLEL: KV cache = numCtx × this.")
    max_loaded_models: Int = Field(ge=0, le=8, description="OLLAMA_MAX_LOADED_MODELS (0 = auto).")
    max_queue: Int = Field(512, ge=1, le=100000, description="OLLAMA_MAX_QUEUE: 503 beyond this.")
    load_timeout: str = Field(description="OLLAMA_LOAD_TIMEOUT: stall detection while loading (a Go duration, at least 1s).")
    context_length: Optional[Int] = Field(
        None, ge=256, le=1048576, description="OLLAMA_CONTEXT_LENGTH, for requests that set no num_ctx."
    )
    debug: Bool = Field(True, description="OLLAMA_DEBUG=1 prints the memory placement the verification reads.")
    origins: list[str] = Field(
        default_factory=list,
        description="OLLAMA_ORIGINS for browser clients: scheme://host[:port] each; a wildcard needs server.allowWildcardOrigins.",
    )
    extra_env: dict[str, EnvValue] = Field(
        default_factory=dict, description="Any other OLLAMA_* variable the pinned version reads."
    )

    @field_validator("gpu_overhead")
    @classmethod
    def _overhead_range(cls, value: ByteSize) -> ByteSize:
        if value > 16 * GIB:
            raise SettingProblem(
                "", int(value), "is more than 16 GiB of VRAM held back",
                "use 512MiB-1GiB on a dedicated Linux host, up to 2GiB when other processes share the GPU",
            )
        return value

    @field_validator("keep_alive")
    @classmethod
    def _keep_alive(cls, value: str) -> str:
        # Ollama reads an integer as seconds; only -1 is accepted bare, so 300 is not mistaken for minutes.
        return value if value == "-1" else _go_duration(value, allow_negative=True)

    @field_validator("load_timeout")
    @classmethod
    def _load_timeout(cls, value: str) -> str:
        return _go_duration(value, at_least_seconds=1)

    @field_validator("origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for index, origin in enumerate(value):
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise SettingProblem(
                    str(index), origin, "is not an origin (scheme://host[:port], no path, no comma)",
                    "write each origin as its own list entry, e.g. https://app.example.com",
                )
        return value

    @field_validator("extra_env")
    @classmethod
    def _only_real_knobs(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name in knobs.REMOVED_ENV_VARS:
                raise SettingProblem(name, value[name], "does nothing", knobs.REMOVED_ENV_VARS[name])
            if name in knobs.TYPED_ENV_VARS:
                raise SettingProblem(
                    name, value[name], "is derived from a typed setting",
                    f"set {knobs.TYPED_ENV_VARS[name]} instead",
                )
            if name not in knobs.SERVER_ENV_VARS:
                raise SettingProblem(
                    name, value[name], "is not read by the pinned Ollama version",
                    "remove it, or use one of: " + ", ".join(sorted(knobs.SERVER_ENV_VARS - set(knobs.TYPED_ENV_VARS))),
                )
            control = _control_character(value[name])
            if control:
                raise SettingProblem(name, value[name], f"holds the control character {control}", "remove it")
        return value


class SelfHealSettings(_Section):
    """The health check restarts a server that stops answering (the restart policy alone would not)."""

    probe_interval_seconds: Int = Field(10, ge=2, le=300, description="Seconds between health probes.")
    probe_timeout_seconds: Int = Field(5, ge=1, le=60, description="A probe slower than this fails.")
    failures_before_restart: Int = Field(
        3, ge=1, le=20, description="Consecutive failed probes before the server is killed and restarted."
    )


def _pinned_image(value: str, example: str) -> str:
    problem = image_reference_problem(value) or (None if image_is_pinned(value) else "is not pinned to a version")
    if problem:
        raise SettingProblem("", value, problem, f"write a reference with a version tag, like {example}")
    return value


def _docker_name(value: str, example: str) -> str:
    problem = docker_name_problem(value)
    if problem:
        raise SettingProblem("", value, problem, f"write a name like {example}")
    return value


def _bind_address(value: str, fix: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise SettingProblem("", value, "is not an IP address", fix) from None
    if "%" in value:
        raise SettingProblem("", value, "is a scoped IPv6 address", fix)
    return value


Engine = Literal["ollama", "llama-server"]


class ServerSettings(_Section):
    engine: Engine = Field(
        "ollama", description="The inference server: ollama, or llama-server (llama.cpp's own server, configured "
        "under llamaServer; OpenAI API only). Switching replaces the container and keeps the models volume.",
    )
    image: str = Field(OLLAMA_IMAGE, description="Ollama image with an explicit version tag (or digest).")
    container_name: str = Field("ollama", description="Container name (Docker's rule: 2+ of letters, digits, _ . -).")
    bind_address: str = Field("127.0.0.1", description="Host address the API port is published on.")
    allow_public_bind: Bool = Field(
        False, description="Required to publish the API on a non-loopback address (the API has no auth)."
    )
    allow_wildcard_origins: Bool = Field(
        False, description="Required for server.env.origins entries that admit any site ('*', 'http://*')."
    )
    port: Int = Field(11434, ge=1, le=65535, description="Host port for the API (either engine).")
    models_volume: str = Field(
        "ollama", description="Named volume at /root/.ollama (Ollama's model store, which llama-server reads too); kept on destroy.",
    )
    restart: Literal["unless-stopped", "always"] = Field("unless-stopped", description="Docker restart policy.")
    startup_timeout_seconds: Int = Field(300, ge=10, le=7200, description="How long to wait for a healthy container.")
    self_heal: SelfHealSettings = Field(default_factory=SelfHealSettings)
    env: ServerEnv

    @field_validator("image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        return _pinned_image(value, OLLAMA_IMAGE)

    @field_validator("container_name", "models_volume")
    @classmethod
    def _docker_name(cls, value: str) -> str:
        return _docker_name(value, "ollama or ollama-models")

    @field_validator("bind_address")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        return _bind_address(value, "use 127.0.0.1 and reach the API through the SSH tunnel")

    @model_validator(mode="after")
    def _exposure_needs_opt_in(self) -> "ServerSettings":
        if not ipaddress.ip_address(self.bind_address).is_loopback and not self.allow_public_bind:
            raise SettingProblem(
                "bindAddress", self.bind_address,
                "publishes the unauthenticated Ollama API beyond this host",
                "keep 127.0.0.1 and use the SSH tunnel, or set server.allowPublicBind: true if a firewall guards the port",
            )
        if any(origin_is_wildcard(origin) for origin in self.env.origins) and not self.allow_wildcard_origins:
            raise SettingProblem(
                "env.origins", self.env.origins, "lets any web page drive the API, which has no authentication",
                "list the exact origins of your clients, or set server.allowWildcardOrigins: true",
            )
        return self


class LlamaServerSettings(_Section):
    """llama.cpp's llama-server, used when server.engine is llama-server. It serves the same GGUF
    Ollama would pull, with the stack's context, KV cache type, flash attention, parallel slots and
    model parameters; bind address, port, models volume, restart policy and self-healing are the
    server section's."""

    image: str = Field(
        LLAMA_SERVER_IMAGE, description="llama.cpp server image pinned to a build number (the CUDA image for a GPU profile).",
    )
    container_name: str = Field("llama-server", description="The llama-server container's name.")
    placement: Literal["fit", "nCpuMoe"] = Field(
        "fit", description="fit: llama.cpp fits the model to the free VRAM, keeping server.env.gpuOverhead free "
        "(--fit-target); nCpuMoe: the expert weights of the first llamaServer.nCpuMoe layers stay on the CPU, "
        "everything else on the GPU (--n-cpu-moe).",
    )
    n_cpu_moe: Optional[Int] = Field(
        None, ge=0, le=INT32_MAX, description="Layers whose MoE expert weights stay in host RAM (placement: nCpuMoe only).",
    )

    @field_validator("image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        return _pinned_image(value, LLAMA_SERVER_IMAGE)

    @field_validator("container_name")
    @classmethod
    def _docker_name(cls, value: str) -> str:
        return _docker_name(value, "llama-server")

    @model_validator(mode="after")
    def _placement_complete(self) -> "LlamaServerSettings":
        if self.placement == "nCpuMoe" and self.n_cpu_moe is None:
            raise SettingProblem("nCpuMoe", None, "is needed for placement: nCpuMoe",
                                 "set llamaServer.nCpuMoe to the number of layers whose experts stay on the CPU, or placement: fit")
        if self.placement == "fit" and self.n_cpu_moe is not None:
            raise SettingProblem("nCpuMoe", self.n_cpu_moe, "does nothing with placement: fit (llama.cpp chooses)",
                                 "set llamaServer.placement: nCpuMoe to use it, or remove it")
        return self


def _stop_sequence(value: str) -> str:
    if not value or "\0" in value:
        raise SettingProblem("", value, "is empty or holds a NUL byte", "write the text that ends an answer, e.g. '</answer>'")
    return value


class ModelParameters(_Section):
    """Modelfile PARAMETERs of the alias. Unset ones inherit the base model's values.
    Integer bounds are the int32 Ollama's runners pass them to C as."""

    num_ctx: Int = Field(ge=256, le=1048576, description="Context window in tokens (KV cache size).")
    num_predict: Int = Field(ge=1, description="Most tokens one answer may generate.")
    num_keep: Optional[Int] = Field(None, ge=-1, le=INT32_MAX, description="-1 keeps as much history as fits when the context fills.")
    use_mmap: Optional[Bool] = Field(None, description="false loads the weights whole instead of paging them.")
    num_batch: Optional[Int] = Field(None, ge=1, le=8192, description="Prompt tokens per batch.")
    num_gpu: Optional[Int] = Field(None, ge=-1, le=INT32_MAX, description="Layers forced onto the GPU; leave unset for Ollama's placement.")
    main_gpu: Optional[Int] = Field(None, ge=0, le=INT32_MAX, description="GPU index for the non-layer tensors on multi-GPU hosts.")
    num_thread: Optional[Int] = Field(None, ge=1, le=512, description="CPU threads for the layers on the CPU; default: physical cores.")
    # The llama runner truncates the seed to uint32, where 2**32-1 means "random" like -1.
    seed: Optional[Int] = Field(None, ge=-1, le=2**32 - 2, description="Sampling seed, for reproducible answers (-1 = random).")
    top_k: Optional[Int] = Field(None, ge=0, le=INT32_MAX, description="Sampling: keep the k most likely tokens.")
    top_p: Optional[Float] = Field(None, ge=0, le=1, description="Sampling: nucleus probability mass.")
    min_p: Optional[Float] = Field(None, ge=0, le=1, description="Sampling: drop tokens below this share of the top one.")
    typical_p: Optional[Float] = Field(None, ge=0, le=1, description="Sampling: locally typical sampling mass.")
    repeat_last_n: Optional[Int] = Field(None, ge=-1, le=INT32_MAX, description="Tokens looked back for repetition penalties.")
    temperature: Optional[Float] = Field(None, ge=0, le=5, description="Sampling temperature.")
    repeat_penalty: Optional[Float] = Field(None, ge=0, le=FLOAT32_MAX, description="Penalty for repeated tokens.")
    presence_penalty: Optional[Float] = Field(None, ge=-FLOAT32_MAX, le=FLOAT32_MAX, description="Penalty for tokens already present.")
    frequency_penalty: Optional[Float] = Field(None, ge=-FLOAT32_MAX, le=FLOAT32_MAX, description="Penalty growing with a token's frequency.")
    stop: Optional[list[Annotated[str, BeforeValidator(lambda v: _stop_sequence(v) if isinstance(v, str) else v)]]] = Field(
        None, description="Stop sequences.")

    @model_validator(mode="before")
    @classmethod
    def _refuse_removed_parameters(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in (k for k in data if isinstance(k, str)):
                snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
                if snake in knobs.REMOVED_MODELFILE_PARAMETERS:
                    raise SettingProblem(key, data[key], "does nothing", knobs.REMOVED_MODELFILE_PARAMETERS[snake])
        return data

    @model_validator(mode="after")
    def _answer_fits_context(self) -> "ModelParameters":
        if self.num_predict >= self.num_ctx:
            raise SettingProblem(
                "numPredict", self.num_predict,
                f"must be less than numCtx ({self.num_ctx}), or a long answer overflows the context and clears the KV cache",
                "leave room for the largest prompt: numPredict ≈ numCtx − max prompt (the plan prints it)",
            )
        return self

    def as_api(self) -> dict[str, Any]:
        """The `parameters` object of POST /api/create: Ollama's own snake_case names."""
        return self.model_dump(exclude_none=True)


def _ollama_name(value: str) -> str:
    problem = ollama_name_problem(value)
    if problem:
        raise SettingProblem("", value, problem, "write a model name like qwen3:30b-a3b-thinking-2507-q8_0 or namespace/model:tag")
    return value


class ModelSettings(_Section):
    base: str = Field(description="Model to pull, e.g. qwen3:30b-a3b-thinking-2507-q8_0 ([host/][namespace/]model[:tag]).")
    alias: str = Field(description="Name of the tuned alias clients use (Ollama's name rules, as for base).")
    parameters: ModelParameters
    pull_timeout: str = Field("2h", description="How long the pull of the base model may take (a Go duration, at least 1s).")
    gguf_path: Optional[str] = Field(None, description="Local GGUF file the planner reads when the base is not in its catalog.")
    registry: Optional[str] = Field(
        None,
        description="Ollama model registry or mirror to pull from (default: Ollama's own), e.g. "
        "http://10.0.0.5:5000 on an air-gapped network; http:// pulls are insecure pulls.",
    )

    @property
    def pull_name(self) -> str:
        """The name the server pulls and the alias is made from: the base, on the configured registry."""
        if self.registry is None:
            return self.base
        host = self.registry.split("://", 1)[1].rstrip("/")
        namespace = "" if "/" in self.base else "library/"
        return f"{host}/{namespace}{self.base}"

    @property
    def insecure_registry(self) -> bool:
        return self.registry is not None and self.registry.startswith("http://")

    @field_validator("registry")
    @classmethod
    def _registry_url(cls, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        problem = _repository_url_problem(value)
        if problem is None and urlsplit(value).path not in ("", "/"):
            problem = "has a path; a model name carries only the registry's host and port"
        if problem:
            raise SettingProblem("", value, problem, "write the registry's root, e.g. http://10.0.0.5:5000")
        return value

    @field_validator("base", "alias")
    @classmethod
    def _name(cls, value: str) -> str:
        return _ollama_name(value)

    @field_validator("pull_timeout")
    @classmethod
    def _pull_timeout(cls, value: str) -> str:
        return _go_duration(value, at_least_seconds=1)

    @field_validator("gguf_path")
    @classmethod
    def _gguf_path(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not value:
            raise SettingProblem("", value, "is empty", "point it at the model's GGUF file, or remove the key")
        return value if value is None else _plain_text(value)

    @model_validator(mode="after")
    def _alias_differs_from_base(self) -> "ModelSettings":
        # Ollama fills in registry, namespace and tag and compares names without case.
        if ollama_full_name(self.alias) == ollama_full_name(self.base):
            raise SettingProblem(
                "alias", self.alias, "names the base model, so destroying the alias would delete the base",
                "give the alias its own name, e.g. qwen3-30b-a3b-2507-q8:ctx32k",
            )
        return self


NVIDIA_KEY_FINGERPRINT = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"


def _repository_url_problem(url: str) -> Optional[str]:
    parts = urlsplit(url) if _control_character(url) is None else None
    if parts is None or parts.scheme not in ("http", "https"):
        return "is not an http:// or https:// URL"
    try:
        port_problem = parts.port is not None and not 1 <= parts.port <= 65535
    except ValueError:
        port_problem = True
    if parts.username or parts.password or parts.query or parts.fragment or port_problem:
        return "holds credentials, a query, a fragment or a bad port"
    if not parts.hostname or host_address_problem(parts.hostname):
        return "does not name a host"
    if not re.fullmatch(r"(/[A-Za-z0-9._~%+-]+)*/?", parts.path):
        return "has a path with characters apt sources cannot carry"
    return None


class HostPrepSettings(_Section):
    """NVIDIA container toolkit setup on the VM; skipped for profile `none`."""

    nvidia_repo_url: str = Field(
        "https://nvidia.github.io/libnvidia-container",
        description="Root of the toolkit's apt repository (gpgkey and stable/deb/ below it); point at a mirror if needed.",
    )
    nvidia_key_fingerprint: str = Field(
        NVIDIA_KEY_FINGERPRINT, pattern=r"^[0-9A-F]{40}$", description="Expected fingerprint of the repository signing key."
    )
    toolkit_version: Optional[str] = Field(
        "1.17.8-1", pattern=r"^[0-9][A-Za-z0-9.+~-]*$", description="apt version of nvidia-container-toolkit; null for the newest."
    )
    cgroup_fix: Bool = Field(
        False, description="no-cgroups = true, only for VMs where GPU containers fail with "
        "bpf_prog_query(BPF_CGROUP_DEVICE) (the GPU check says so); false restores the toolkit's default.",
    )
    gpu_check: Bool = Field(True, description="Prove the setup by running a throwaway container that lists the GPU.")
    install_docker: Bool = Field(
        True, description="Install Docker (the distribution's docker.io) when the VM has none; false: fail instead."
    )
    docker_registry_mirror: Optional[str] = Field(
        None, description="Docker Hub mirror for the VM's engine (daemon.json registry-mirrors), e.g. for air-gapped VMs; "
        "an http:// mirror is also marked insecure.",
    )
    docker_insecure_registries: list[str] = Field(
        default_factory=list, max_length=20,
        description="Registries (host:port) the VM's engine may pull images from over plain HTTP, e.g. a private "
        "registry holding llamaServer.image on an air-gapped network (daemon.json insecure-registries).",
    )
    apt_lock_timeout_seconds: Int = Field(
        600, ge=0, le=7200,
        description="How long apt waits for a lock held by another apt (unattended-upgrades on a fresh VM).",
    )

    @field_validator("nvidia_repo_url", "docker_registry_mirror")
    @classmethod
    def _repository_url(cls, value: Optional[str]) -> Optional[str]:
        problem = value is not None and _repository_url_problem(value)
        if problem:
            raise SettingProblem("", value, problem, "write the repository root, e.g. https://nvidia.github.io/libnvidia-container")
        return value

    @field_validator("docker_insecure_registries")
    @classmethod
    def _registry_hosts(cls, value: list[str]) -> list[str]:
        for index, entry in enumerate(value):
            problem = _registry_host_problem(entry)
            if problem:
                raise SettingProblem(str(index), entry, problem, "write the registry's host and port, e.g. 10.0.0.5:5000")
        return value


def _registry_host_problem(entry: str) -> Optional[str]:
    host, colon, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
    if colon and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return "has a bad port"
    return host_address_problem(host)


class VerificationSettings(_Section):
    fail_on_mismatch: Bool = Field(False, description="Fail the deploy (not just warn) when the server differs from the plan.")
    tolerance: Float = Field(0.15, gt=0, lt=1, description="Relative difference allowed between planned and actual bytes.")


class ClientSettings(_Section):
    timeout_seconds: Int = Field(300, ge=10, le=86400, description="Your client's request timeout; sizes the prompt budget.")


class GatewaySettings(_Section):
    """The team endpoint: Caddy beside Ollama terminates HTTPS and admits only requests that carry
    one of the API keys; Ollama stays on loopback. Off unless enabled."""

    enabled: Bool = Field(False, description="Run the HTTPS gateway with API keys in front of the API.")
    image: str = Field(CADDY_IMAGE, description="Caddy image with an explicit version tag (or digest).")
    container_name: str = Field("ollama-gateway", description="The gateway container's name.")
    data_volume: str = Field(
        "ollama-gateway-data", description="Named volume at /data: the internal CA and certificates; kept on destroy.",
    )
    port: Int = Field(8443, ge=1, le=65535, description="HTTPS port clients connect to (443 with a domain).")
    bind_address: str = Field("0.0.0.0", description="Host address the gateway listens on.")
    domain: Optional[str] = Field(
        None, description="DNS name pointing at the host: Caddy gets a certificate for it by ACME (from Let's Encrypt, "
        "ports 80 or 443 reachable from the internet). Absent: Caddy's internal CA, whose root the stack exports.",
    )
    acme_email: Optional[str] = Field(None, description="Contact address for the ACME account; required with a domain.")
    acme_directory: Optional[str] = Field(
        None, description="ACME directory URL of another CA for the domain's certificate (a company's own, e.g. "
        "step-ca: https://ca.internal/acme/acme/directory); absent: Let's Encrypt.",
    )
    acme_ca_root: Optional[str] = Field(
        None, description="PEM certificate the ACME directory's own HTTPS is signed by, when the system does not "
        "trust it (a private ACME CA).",
    )
    api_keys: list[SecretStr] = Field(
        default_factory=list, max_length=100,
        description="Keys clients send as `Authorization: Bearer KEY`, each 32-128 of A-Z a-z 0-9 _ - "
        "(`openssl rand -hex 32`); set each with `pulumi config set --secret --path 'gateway.apiKeys[N]'`.",
    )

    @field_validator("image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        return _pinned_image(value, CADDY_IMAGE)

    @field_validator("container_name", "data_volume")
    @classmethod
    def _docker_name(cls, value: str) -> str:
        return _docker_name(value, "ollama-gateway")

    @field_validator("bind_address")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        return _bind_address(value, "write 0.0.0.0 (all addresses) or one of the host's")

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and (site_name_problem(value) or is_ip_address(value)):
            raise SettingProblem("", value, "is not a DNS name", "write the name that points at the host, e.g. llm.example.com")
        return value

    @field_validator("acme_email")
    @classmethod
    def _email(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and email_problem(value):
            raise SettingProblem("", value, email_problem(value), "write an address like ops@example.com")
        return value

    @field_validator("acme_directory")
    @classmethod
    def _directory(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and acme_directory_problem(value):
            raise SettingProblem("", value, acme_directory_problem(value), "write the CA's directory URL, https://HOST[:PORT]/PATH")
        return value

    @field_validator("acme_ca_root")
    @classmethod
    def _ca_root(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and pem_certificate_problem(value):
            raise SettingProblem("", "(certificate not shown)", pem_certificate_problem(value),
                                 "paste the CA's certificate, -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----")
        return value

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        seen = set()
        for index, key in enumerate(value):
            text = key.get_secret_value()
            if text == UNDECRYPTED_SECRET:
                continue
            problem = api_key_problem(text)
            if problem:
                raise SettingProblem(str(index), NOT_SHOWN_KEY, problem, "set a new key with `openssl rand -hex 32`")
            if text in seen:
                raise SettingProblem(str(index), NOT_SHOWN_KEY, "repeats an earlier key", "remove the duplicate")
            seen.add(text)
        return value

    @model_validator(mode="after")
    def _complete(self) -> "GatewaySettings":
        if self.enabled and not self.api_keys:
            raise SettingProblem(
                "apiKeys", None, "is empty, so the gateway would admit no one",
                "pulumi config set --secret --path 'gateway.apiKeys[0]' \"$(openssl rand -hex 32)\"",
            )
        if self.domain is not None and self.acme_email is None:
            raise SettingProblem("acmeEmail", None, "is needed for the ACME certificate of gateway.domain",
                                 "set gateway.acmeEmail, or remove gateway.domain to use the internal CA")
        for key, value in (("acmeDirectory", self.acme_directory), ("acmeCaRoot", self.acme_ca_root)):
            if value is not None and self.domain is None:
                raise SettingProblem(key, "(set)", "does nothing without gateway.domain (the internal CA needs no ACME)",
                                     "set gateway.domain, or remove it")
        return self


Profile = Literal["a10", "v100", "none"]
# Where the fleet's plain-HTTP traffic may flow: RFC 1918, carrier-grade NAT (VPN overlays such as
# Tailscale use it) and IPv6 unique-local addresses; nothing the internet routes to.
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"))
PRIVATE_NETWORKS_TEXT = "10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7"


def on_private_network(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return any(ip in network for network in PRIVATE_NETWORKS if network.version == ip.version)


class FleetHostSettings(HostSettings):
    """One GPU VM of a fleet: reached over SSH like `host`, serving the same alias, fronted by the router."""

    name: str = Field(description="Short name of the host (prefixes its resources and report rows), e.g. gpu1.")
    private_address: str = Field(
        description="The host's address on the private network the router host shares with it (10.x, 172.16-31.x, "
        "192.168.x, 100.64-127.x, fc00::/7): Ollama is published there as well as on loopback, for the router only.",
    )
    profile: Optional[Profile] = Field(None, description="GPU profile of this host when it differs from the stack's.")
    hardware: Optional[HardwareSettings] = Field(None, description="Planner figures of this host when they differ from the stack's.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,19}", value, re.ASCII):
            raise SettingProblem("", value, "is not 1-20 of a-z 0-9 - starting with a letter", "write a short name like gpu1")
        return value

    @field_validator("private_address")
    @classmethod
    def _private_address(cls, value: str) -> str:
        _bind_address(value, "write the host's private IP address, e.g. 10.0.0.5")
        if not on_private_network(value):
            raise SettingProblem(
                "", value, "is not on a private network, and the Ollama API published there has no authentication",
                f"write the host's address on the private network it shares with the router host ({PRIVATE_NETWORKS_TEXT})",
            )
        return value


RoutingStrategy = Literal["least-busy", "latency-based-routing", "simple-shuffle", "usage-based-routing"]


class RouterSettings(_Section):
    """LiteLLM's proxy in front of the fleet: one OpenAI-compatible endpoint that spreads requests over
    the hosts, retries on another host, cools a failing one down and checks their health. Off unless enabled."""

    enabled: Bool = Field(False, description="Run the router (needs `hosts`).")
    host: Optional[str] = Field(None, description="Name of the hosts entry the router container runs on (default: the first).")
    image: str = Field(LITELLM_IMAGE, description="LiteLLM proxy image with an explicit version tag (or digest).")
    container_name: str = Field("ollama-router", description="The router container's name.")
    port: Int = Field(4000, ge=1, le=65535, description="Port the router listens on.")
    bind_address: str = Field(
        "127.0.0.1", description="Address on the router host it listens on: loopback (SSH tunnel) or a private one; "
        "never a public address (the router speaks plain HTTP).",
    )
    routing_strategy: RoutingStrategy = Field("least-busy", description="LiteLLM routing strategy across the hosts.")
    master_key: Optional[SecretStr] = Field(
        None, description="The key clients send as `Authorization: Bearer KEY`: sk- and 32-128 of A-Z a-z 0-9 _ - "
        "(`echo sk-$(openssl rand -hex 32)`); a secret: `pulumi config set --secret --path router.masterKey`.",
    )
    num_retries: Int = Field(2, ge=0, le=10, description="Retries of a failed request, each on a host picked again.")
    timeout_seconds: Int = Field(600, ge=5, le=86400, description="How long one attempt on one host may take before it counts as failed.")
    allowed_fails: Int = Field(0, ge=0, le=100, description="Failures a host may have within a minute before it is cooled down.")
    cooldown_seconds: Int = Field(30, ge=1, le=3600, description="How long a failing host gets no requests.")
    health_check_interval_seconds: Int = Field(
        30, ge=5, le=3600, description="Seconds between the router's health checks of every host (a 1-token request each).",
    )

    @field_validator("image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        _pinned_image(value, LITELLM_IMAGE)
        # LiteLLM also publishes moving tags (main-latest, main-stable); one of them once carried a
        # compromised release. A version tag has a digit.
        if "@" not in value and not re.search(r"[0-9]", value.rpartition(":")[2]):
            raise SettingProblem("", value, "is a moving tag, not a version", f"write a reference with a version tag, like {LITELLM_IMAGE}")
        return value

    @field_validator("container_name")
    @classmethod
    def _docker_name(cls, value: str) -> str:
        return _docker_name(value, "ollama-router")

    @field_validator("bind_address")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        _bind_address(value, "write 127.0.0.1 (reach it through the SSH tunnel) or the router host's private address")
        if not (ipaddress.ip_address(value).is_loopback or on_private_network(value)):
            raise SettingProblem(
                "", value, "would publish the router's plain-HTTP port, keys and prompts included, beyond private networks",
                "write 127.0.0.1 or the router host's private address; for the internet, put an HTTPS proxy in front",
            )
        return value

    @model_validator(mode="after")
    def _master_key(self) -> "RouterSettings":
        # A rule of the section (named key), so the message shows the marker, never the key.
        text = self.master_key.get_secret_value() if self.master_key is not None else UNDECRYPTED_SECRET
        if text != UNDECRYPTED_SECRET and (not text.startswith("sk-") or api_key_problem(text[3:])):
            raise SettingProblem(
                "masterKey", NOT_SHOWN_KEY, "is not sk- followed by 32-128 of A-Z a-z 0-9 _ - (LiteLLM's master key form)",
                "pulumi config set --secret --path router.masterKey \"sk-$(openssl rand -hex 32)\"",
            )
        return self


class Settings(_Section):
    stack: str = Field(description="Pulumi stack name (not a config key; set by the loader).")
    profile: Profile = Field(description="GPU profile whose defaults apply: a10, v100 or none (CPU only).")
    host: Optional[HostSettings] = Field(None, description="SSH target; absent = the local Docker engine.")
    ssh_private_key: Optional[SecretStr] = Field(None, description="Private key for the SSH user (a Pulumi secret).")
    hardware: HardwareSettings = Field(default_factory=HardwareSettings)
    server: ServerSettings
    llama_server: LlamaServerSettings = Field(default_factory=LlamaServerSettings)
    model: ModelSettings
    host_prep: HostPrepSettings = Field(default_factory=HostPrepSettings)
    verification: VerificationSettings = Field(default_factory=VerificationSettings)
    client: ClientSettings = Field(default_factory=ClientSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    hosts: list[FleetHostSettings] = Field(
        default_factory=list, max_length=32,
        description="A fleet instead of one `host`: each VM gets host prep, server and alias; the router fronts them.",
    )
    router: RouterSettings = Field(default_factory=RouterSettings)

    @property
    def has_gpu(self) -> bool:
        return self.profile != "none"

    @property
    def is_remote(self) -> bool:
        return self.host is not None

    @property
    def uses_llama_server(self) -> bool:
        return self.server.engine == "llama-server"

    @property
    def engine_image(self) -> str:
        """The image the stack's server runs: also the one the GPU check starts, so it is pulled once."""
        return self.llama_server.image if self.uses_llama_server else self.server.image

    @model_validator(mode="after")
    def _cross_section_rules(self) -> "Settings":
        env = self.server.env
        if env.kv_cache_type != "f16" and not env.flash_attention:
            raise SettingProblem(
                "server.env.kvCacheType", env.kv_cache_type,
                "is dropped to f16 by Ollama when flash attention is off",
                "set server.env.flashAttention: true, or kvCacheType: f16",
            )
        gpu_figures = {"gpuFreeVram": self.hardware.gpu_free_vram, "gpuBandwidthGbps": self.hardware.gpu_bandwidth_gbps}
        for key, value in gpu_figures.items():
            if value is not None and not self.has_gpu:
                raise SettingProblem(
                    f"hardware.{key}", value, "describes a GPU, but profile none runs on the CPU only",
                    "remove it, or choose a GPU profile (a10, v100)",
                )
        if self.gateway.enabled and not self.hosts:
            self._gateway_guards_the_only_way_in()
        if self.uses_llama_server:
            self._only_what_llama_server_does()
        if self.hosts or self.router.enabled:
            self._fleet_is_complete()
        return self

    def _only_what_llama_server_does(self) -> None:
        """Settings that would be silently ignored by llama-server are refused, each with its fix."""
        per_gpu = self.hardware.gpu_free_vram_per_gpu
        if per_gpu is not None and len(per_gpu) > 1:
            raise SettingProblem("hardware.gpuFreeVramPerGpu", per_gpu, "lists several GPUs; the program runs llama-server on one",
                                 "give one GPU's free VRAM (hardware.gpuFreeVram), or set server.engine: ollama")
        if self.llama_server.placement == "nCpuMoe" and not self.has_gpu:
            raise SettingProblem("llamaServer.placement", "nCpuMoe", "keeps experts off a GPU that profile none does not have",
                                 "use placement: fit (the default), or a GPU profile")
        parameters = self.model.parameters
        refused = [
            ("model.parameters.numGpu", parameters.num_gpu,
             "is Ollama's layer count; llama-server places tensors by llamaServer.placement", "remove it"),
            ("model.parameters.stop", parameters.stop,
             "has no server-wide llama-server flag", "send stop sequences in each request, or remove it"),
            ("server.env.extraEnv", self.server.env.extra_env or None,
             "holds OLLAMA_* variables, which llama-server does not read", "remove them, or set server.engine: ollama"),
            ("server.env.origins", self.server.env.origins or None,
             "cannot be set on llama-server, which has no origin list", "remove it; put the gateway in front for browser clients"),
        ]
        for key, value, problem, fix in refused:
            if value is not None:
                raise SettingProblem(key, value, f"{problem} (server.engine is llama-server)", fix)

    def _fleet_is_complete(self) -> None:
        names = [host.name for host in self.hosts]
        if self.host is not None:
            raise SettingProblem("hosts", names, "and host are both set", "list every VM under hosts and remove host")
        if self.router.enabled and not self.hosts:
            raise SettingProblem("router.enabled", True, "needs hosts to route to", "list the VMs under hosts, or set router.enabled: false")
        for index, host in enumerate(self.hosts):
            if host.name in names[:index]:
                raise SettingProblem(f"hosts[{index}].name", host.name, "repeats an earlier host's name", "give each host its own name")
            if (host.address, host.port) in [(other.address, other.port) for other in self.hosts[:index]]:
                raise SettingProblem(f"hosts[{index}].address", host.address, "is an earlier host's address", "list each VM once")
            hardware = host.hardware or self.hardware
            if (host.profile or self.profile) == "none" and (hardware.gpu_free_vram or hardware.gpu_bandwidth_gbps):
                raise SettingProblem(f"hosts[{index}].hardware", host.name, "describes a GPU, but this host's profile none runs on the CPU only",
                                     "remove the GPU figures, or give the host a GPU profile (a10, v100)")
        if self.gateway.enabled and not self.router.enabled:
            raise SettingProblem("gateway.enabled", True, "fronts the router in a fleet, and router.enabled is false",
                                 "set router.enabled: true, or gateway.enabled: false")
        router = self.router
        if router.enabled:
            if router.host is not None and router.host not in names:
                raise SettingProblem("router.host", router.host, "is not the name of a hosts entry", f"write one of {', '.join(names)}")
            if router.master_key is None:
                raise SettingProblem("router.masterKey", None, "is missing, so the router would admit anyone",
                                     'pulumi config set --secret --path router.masterKey "sk-$(openssl rand -hex 32)"')
            if router.port == self.server.port:
                raise SettingProblem("router.port", router.port, "is also server.port; both listen on the router host",
                                     "choose another port, e.g. 4000")
            if self.gateway.enabled and not ipaddress.ip_address(router.bind_address).is_loopback:
                raise SettingProblem("router.bindAddress", router.bind_address,
                                     "lets clients past the gateway's keys with the master key",
                                     "keep router.bindAddress: 127.0.0.1 when gateway.enabled is true")
            if self.gateway.enabled and self.gateway.port == router.port:
                raise SettingProblem("gateway.port", self.gateway.port, "is also router.port; both listen on the router host",
                                     "choose another port, e.g. 8443")

    @property
    def router_host(self) -> Optional["FleetHostSettings"]:
        if not self.router.enabled:
            return None
        return next((host for host in self.hosts if host.name == self.router.host), self.hosts[0])

    def _gateway_guards_the_only_way_in(self) -> None:
        if not ipaddress.ip_address(self.server.bind_address).is_loopback:
            raise SettingProblem(
                "server.bindAddress", self.server.bind_address,
                "publishes the API beyond this host, past the gateway's keys",
                "keep server.bindAddress: 127.0.0.1 when gateway.enabled is true",
            )
        if self.gateway.port == self.server.port:
            raise SettingProblem(
                "gateway.port", self.gateway.port, "is also server.port; both listen on the host",
                "choose another port, e.g. 8443",
            )
