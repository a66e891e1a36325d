"""The typed stack configuration: every key a user can set under the `ollama-gpu:` namespace.

Models use camelCase aliases so the names here are exactly the names in Pulumi.<stack>.yaml.
Cross-field rules raise `SettingProblem`, which names the key it is about and the fix, so that
config_loader can turn any failure into one message a user can act on.
"""

import ipaddress
import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ByteSize, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.alias_generators import to_camel

from ollama_gpu import knobs
from ollama_gpu.pins import OLLAMA_IMAGE


class SettingProblem(ValueError):
    """A rule about one config key, with the fix; `key` is relative to the model raising it."""

    def __init__(self, key: str, value: Any, problem: str, fix: str):
        super().__init__(problem)
        self.key, self.value, self.problem, self.fix = key, value, problem, fix


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True)


_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$")


def _go_duration(value: str, allow_negative: bool = False) -> str:
    """Ollama parses these with Go's time.ParseDuration; anything else is silently ignored."""
    text = str(value).strip()
    if allow_negative and text in ("-1", "-1s", "-1m", "-1h"):
        return text
    if not _DURATION.match(text):
        raise SettingProblem(
            "", value, "is not a Go duration", "write it like '5m', '90s' or '1h30m'"
        )
    return text


GO_DURATION_SECONDS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def duration_seconds(text: str) -> float:
    return sum(
        float(number) * GO_DURATION_SECONDS[unit]
        for number, _, unit in re.findall(r"(\d+(\.\d+)?)(ns|us|ms|s|m|h)", text)
    )


class HostSettings(_Section):
    """The GPU VM, reached over SSH. Absent for a stack that drives the local Docker engine."""

    address: str = Field(description="IP address or DNS name of the VM.")
    user: str = Field("root", description="SSH login; host prep runs through `sudo -n` when not root.")
    port: int = Field(22, ge=1, le=65535, description="SSH port.")
    host_key: str = Field(
        description="The VM's SSH host public key ('ssh-ed25519 AAAA...'), pinned so a "
        "man-in-the-middle cannot receive the deploy. Read it with `ssh-keyscan -t ed25519 HOST`."
    )
    ssh_agent_socket: Optional[str] = Field(
        None, description="Use this ssh-agent socket instead of the sshPrivateKey secret."
    )

    @field_validator("host_key")
    @classmethod
    def _host_key_shape(cls, value: str) -> str:
        if not re.match(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+=*$", value.strip()):
            raise SettingProblem(
                "", value, "is not an SSH public host key",
                "paste one line of `ssh-keyscan -t ed25519 HOST` without the host name",
            )
        return value.strip()


class HardwareSettings(_Section):
    """What the planner assumes about the machine; unset values come from the GPU profile."""

    gpu_free_vram: Optional[ByteSize] = Field(None, description="VRAM Ollama sees as free, e.g. '22.5GiB'.")
    gpu_free_vram_per_gpu: Optional[list[ByteSize]] = Field(
        None, min_length=1, max_length=12,
        description="Free VRAM of each GPU in CUDA order on a multi-GPU host, e.g. ['22.5GiB', '22.5GiB']; "
        "its length is the GPU count. Replaces gpuFreeVram.",
    )
    gpu_bandwidth_gbps: Optional[float] = Field(None, gt=0, description="GPU memory bandwidth, GB/s.")
    host_ram: Optional[ByteSize] = Field(None, description="Host RAM, e.g. '116GB'.")
    host_ram_bandwidth_gbps: Optional[float] = Field(None, gt=0, description="Host RAM bandwidth, GB/s.")
    prefill_tokens_per_second: Optional[float] = Field(
        None, gt=0, description="Measured prompt-processing rate, for the context budget."
    )

    @model_validator(mode="after")
    def _one_vram_figure(self) -> "HardwareSettings":
        if self.gpu_free_vram is not None and self.gpu_free_vram_per_gpu is not None:
            raise SettingProblem(
                "gpuFreeVramPerGpu", self.gpu_free_vram_per_gpu, "and gpuFreeVram are both set",
                "keep gpuFreeVramPerGpu (one figure per GPU) and remove gpuFreeVram",
            )
        return self


class ServerEnv(_Section):
    """Ollama server tuning; each field becomes one OLLAMA_* variable the pinned version reads."""

    flash_attention: bool = Field(description="OLLAMA_FLASH_ATTENTION; needed for a quantized KV cache.")
    kv_cache_type: Literal["f16", "q8_0", "q4_0"] = Field(description="OLLAMA_KV_CACHE_TYPE.")
    gpu_overhead: ByteSize = Field(description="OLLAMA_GPU_OVERHEAD: VRAM held back from layer placement.")
    keep_alive: str = Field(description="OLLAMA_KEEP_ALIVE: '-1' keeps the model loaded for good.")
    num_parallel: int = Field(ge=1, le=16, description="OLLAMA_NUM_PARALLEL: KV cache = numCtx × this.")
    max_loaded_models: int = Field(ge=0, le=8, description="OLLAMA_MAX_LOADED_MODELS (0 = auto).")
    max_queue: int = Field(512, ge=1, le=100000, description="OLLAMA_MAX_QUEUE: 503 beyond this.")
    load_timeout: str = Field(description="OLLAMA_LOAD_TIMEOUT: stall detection while loading.")
    context_length: Optional[int] = Field(
        None, ge=256, le=1048576, description="OLLAMA_CONTEXT_LENGTH, for requests that set no num_ctx."
    )
    debug: bool = Field(True, description="OLLAMA_DEBUG=1 prints the memory placement the verification reads.")
    origins: list[str] = Field(default_factory=list, description="OLLAMA_ORIGINS for browser clients.")
    extra_env: dict[str, str] = Field(
        default_factory=dict, description="Any other OLLAMA_* variable the pinned version reads."
    )

    @field_validator("gpu_overhead")
    @classmethod
    def _overhead_range(cls, value: ByteSize) -> ByteSize:
        if value > 16 * 2**30:
            raise SettingProblem(
                "", int(value), "is more than 16 GiB of VRAM held back",
                "use 512MiB-1GiB on a dedicated Linux host, up to 2GiB when other processes share the GPU",
            )
        return value

    @field_validator("keep_alive")
    @classmethod
    def _keep_alive(cls, value: str) -> str:
        return _go_duration(value, allow_negative=True)

    @field_validator("load_timeout")
    @classmethod
    def _load_timeout(cls, value: str) -> str:
        return _go_duration(value)

    @field_validator("origins")
    @classmethod
    def _no_wildcard_origin(cls, value: list[str]) -> list[str]:
        if "*" in value:
            raise SettingProblem(
                "", value, "lets any web page drive the API", "list the exact origins of your clients"
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
        return value


class SelfHealSettings(_Section):
    """The health check restarts a server that stops answering (the restart policy alone would not)."""

    probe_interval_seconds: int = Field(10, ge=2, le=300, description="Seconds between health probes.")
    probe_timeout_seconds: int = Field(5, ge=1, le=60, description="A probe slower than this fails.")
    failures_before_restart: int = Field(
        3, ge=1, le=20, description="Consecutive failed probes before the server is killed and restarted."
    )


class ServerSettings(_Section):
    image: str = Field(OLLAMA_IMAGE, description="Ollama image with an explicit version tag (or digest).")
    container_name: str = Field("ollama", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", description="Container name.")
    bind_address: str = Field("127.0.0.1", description="Host address the API port is published on.")
    allow_public_bind: bool = Field(
        False, description="Required to publish the API on a non-loopback address (the API has no auth)."
    )
    port: int = Field(11434, ge=1, le=65535, description="Host port for the API.")
    models_volume: str = Field("ollama", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$", description="Named volume at /root/.ollama; kept on destroy.")
    restart: Literal["unless-stopped", "always"] = Field("unless-stopped", description="Docker restart policy.")
    startup_timeout_seconds: int = Field(300, ge=10, le=7200, description="How long to wait for a healthy container.")
    self_heal: SelfHealSettings = Field(default_factory=SelfHealSettings)
    env: ServerEnv

    @field_validator("image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        name, _, digest = value.partition("@")
        last = name.rsplit("/", 1)[-1]
        tag = last.partition(":")[2]
        if not digest and (not tag or tag == "latest"):
            raise SettingProblem(
                "", value, "is not pinned to a version", f"use a version tag, e.g. {OLLAMA_IMAGE}"
            )
        return value

    @field_validator("bind_address")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise SettingProblem("", value, "is not an IP address", "use 127.0.0.1 and reach the API through the SSH tunnel") from None
        return value

    @model_validator(mode="after")
    def _public_bind_needs_opt_in(self) -> "ServerSettings":
        if not ipaddress.ip_address(self.bind_address).is_loopback and not self.allow_public_bind:
            raise SettingProblem(
                "bindAddress", self.bind_address,
                "publishes the unauthenticated Ollama API beyond this host",
                "keep 127.0.0.1 and use the SSH tunnel, or set server.allowPublicBind: true if a firewall guards the port",
            )
        return self


class ModelParameters(_Section):
    """Modelfile PARAMETERs of the alias. Unset ones inherit the base model's values."""

    num_ctx: int = Field(ge=256, le=1048576, description="Context window in tokens (KV cache size).")
    num_predict: int = Field(ge=1, description="Most tokens one answer may generate.")
    num_keep: Optional[int] = Field(None, ge=-1, description="-1 keeps as much history as fits when the context fills.")
    use_mmap: Optional[bool] = Field(None, description="false loads the weights whole instead of paging them.")
    num_batch: Optional[int] = Field(None, ge=1, le=8192, description="Prompt tokens per batch.")
    num_gpu: Optional[int] = Field(None, ge=-1, description="Layers forced onto the GPU; leave unset for Ollama's placement.")
    main_gpu: Optional[int] = Field(None, ge=0, description="GPU index for the non-layer tensors on multi-GPU hosts.")
    num_thread: Optional[int] = Field(None, ge=1, le=512, description="CPU threads for the layers on the CPU; default: physical cores.")
    seed: Optional[int] = Field(None, description="Sampling seed, for reproducible answers.")
    top_k: Optional[int] = Field(None, ge=0, description="Sampling: keep the k most likely tokens.")
    top_p: Optional[float] = Field(None, ge=0, le=1, description="Sampling: nucleus probability mass.")
    min_p: Optional[float] = Field(None, ge=0, le=1, description="Sampling: drop tokens below this share of the top one.")
    typical_p: Optional[float] = Field(None, ge=0, le=1, description="Sampling: locally typical sampling mass.")
    repeat_last_n: Optional[int] = Field(None, ge=-1, description="Tokens looked back for repetition penalties.")
    temperature: Optional[float] = Field(None, ge=0, le=5, description="Sampling temperature.")
    repeat_penalty: Optional[float] = Field(None, ge=0, description="Penalty for repeated tokens.")
    presence_penalty: Optional[float] = Field(None, description="Penalty for tokens already present.")
    frequency_penalty: Optional[float] = Field(None, description="Penalty growing with a token's frequency.")
    stop: Optional[list[str]] = Field(None, description="Stop sequences.")

    @model_validator(mode="before")
    @classmethod
    def _refuse_removed_parameters(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
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


class ModelSettings(_Section):
    base: str = Field(description="Model to pull, e.g. qwen3:30b-a3b-thinking-2507-q8_0.")
    alias: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.:/-]*$", description="Name of the tuned alias clients use.")
    parameters: ModelParameters
    pull_timeout: str = Field("2h", description="How long the pull of the base model may take.")
    warm: bool = Field(True, description="Load the alias once after deploy so the first request does not pay the load.")
    gguf_path: Optional[str] = Field(None, description="Local GGUF file the planner reads when the base is not in its catalog.")

    @field_validator("pull_timeout")
    @classmethod
    def _pull_timeout(cls, value: str) -> str:
        return _go_duration(value)

    @model_validator(mode="after")
    def _alias_differs_from_base(self) -> "ModelSettings":
        if self.alias == self.base:
            raise SettingProblem(
                "alias", self.alias, "equals the base model, so destroying the alias would delete the base",
                "give the alias its own name, e.g. qwen3-30b-a3b-2507-q8:ctx32k",
            )
        return self


NVIDIA_KEY_FINGERPRINT = "C95B321B61E88C1809C4F759DDCAE044F796ECB0"


class HostPrepSettings(_Section):
    """NVIDIA container toolkit setup on the VM; skipped for profile `none`."""

    nvidia_repo_url: str = Field(
        "https://nvidia.github.io/libnvidia-container",
        pattern=r"^https?://[^\s'\"]+$",
        description="Root of the toolkit's apt repository (gpgkey and stable/deb/ below it); point at a mirror if needed.",
    )
    nvidia_key_fingerprint: str = Field(
        NVIDIA_KEY_FINGERPRINT, pattern=r"^[0-9A-F]{40}$", description="Expected fingerprint of the repository signing key."
    )
    toolkit_version: Optional[str] = Field(
        "1.17.8-1", pattern=r"^[0-9][A-Za-z0-9.+~-]*$", description="apt version of nvidia-container-toolkit; null for the newest."
    )
    cgroup_fix: bool = Field(
        False, description="Set no-cgroups = true for VMs where GPU containers fail with bpf_prog_query(BPF_CGROUP_DEVICE)."
    )
    gpu_check: bool = Field(True, description="Prove the setup by running a throwaway container that lists the GPU.")


class VerificationSettings(_Section):
    fail_on_mismatch: bool = Field(False, description="Fail the deploy (not just warn) when the server differs from the plan.")
    tolerance: float = Field(0.15, gt=0, lt=1, description="Relative difference allowed between planned and actual bytes.")


class ClientSettings(_Section):
    timeout_seconds: int = Field(300, ge=10, le=86400, description="Your client's request timeout; sizes the prompt budget.")


Profile = Literal["a10", "v100", "none"]


class Settings(_Section):
    stack: str = Field(description="Pulumi stack name (not a config key; set by the loader).")
    profile: Profile = Field(description="GPU profile whose defaults apply: a10, v100 or none (CPU only).")
    host: Optional[HostSettings] = Field(None, description="SSH target; absent = the local Docker engine.")
    ssh_private_key: Optional[SecretStr] = Field(None, description="Private key for the SSH user (a Pulumi secret).")
    hardware: HardwareSettings = Field(default_factory=HardwareSettings)
    server: ServerSettings
    model: ModelSettings
    host_prep: HostPrepSettings = Field(default_factory=HostPrepSettings)
    verification: VerificationSettings = Field(default_factory=VerificationSettings)
    client: ClientSettings = Field(default_factory=ClientSettings)

    @property
    def has_gpu(self) -> bool:
        return self.profile != "none"

    @property
    def is_remote(self) -> bool:
        return self.host is not None

    @model_validator(mode="after")
    def _cross_section_rules(self) -> "Settings":
        env = self.server.env
        if env.kv_cache_type != "f16" and not env.flash_attention:
            raise SettingProblem(
                "server.env.kvCacheType", env.kv_cache_type,
                "is dropped to f16 by Ollama when flash attention is off",
                "set server.env.flashAttention: true, or kvCacheType: f16",
            )
        if self.host is not None and self.ssh_private_key is None and self.host.ssh_agent_socket is None:
            raise SettingProblem(
                "sshPrivateKey", None, "is missing, host.sshAgentSocket is not set, and no ssh-agent is running (SSH_AUTH_SOCK)",
                f"pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519 -s {self.stack}, or ssh-add your key",
            )
        return self
