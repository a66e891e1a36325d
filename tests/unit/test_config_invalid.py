"""Bad config is refused with one message per problem that names the stack, the exact key, the value
the user wrote and the fix. Pure config: the same table runs through the Pulumi program in
test_program_invalid.py, which also checks that nothing was registered."""

from typing import Any, Optional

import pytest

from ollama_gpu import knobs
from ollama_gpu.config_loader import load_settings
from ollama_gpu.errors import ConfigError
from tests.unit.conftest import AGENT_SOCKET, HOST_ADDRESS, HOST_KEY, local_config, remote_config

A10_BASE = "qwen3:30b-a3b-thinking-2507-q8_0"
# A line starting with the old transport's heredoc terminator and `)` closed both the heredoc and
# the `$( )` around it under bash; the rest ran on the host.
BREAKOUT = 'x\nOLLAMA_GPU_SCRIPT_END)" ; touch pwned ; : "'
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----"


def _case(case_id: str, stack: str, config: dict[str, Any], key: str, shown: str, hint: Optional[str] = None):
    """`shown` is how the message prints the offending value, right after `ollama-gpu:<key> = `."""
    return pytest.param(stack, config, key, shown, hint, id=case_id)


def _a10(overrides: dict[str, Any]) -> dict[str, Any]:
    return remote_config("a10", overrides)


def _local(overrides: dict[str, Any]) -> dict[str, Any]:
    return local_config(overrides)


def _env(**env: Any) -> dict[str, Any]:
    return {"server": {"env": env}}


def _parameters(**parameters: Any) -> dict[str, Any]:
    return {"model": {"parameters": parameters}}


def _camel(snake: str) -> str:
    first, *rest = snake.split("_")
    return first + "".join(word.capitalize() for word in rest)


INVALID_CASES = [
    # Wrong types.
    _case("port-not-a-number", "local", _local({"server": {"port": "eleven"}}), "server.port", "'eleven'"),
    _case("flash-attention-not-a-bool", "local", _local(_env(flashAttention="maybe")),
          "server.env.flashAttention", "'maybe'"),
    _case("num-ctx-not-an-int", "a10", _a10(_parameters(numCtx="32k")), "model.parameters.numCtx", "'32k'"),
    _case("temperature-not-a-number", "local", _local(_parameters(temperature="hot")),
          "model.parameters.temperature", "'hot'"),
    _case("origins-not-a-list", "local", _local(_env(origins="http://a.example")),
          "server.env.origins", "'http://a.example'"),
    _case("extra-env-not-a-map", "local", _local(_env(extraEnv=["OLLAMA_NOPRUNE=1"])),
          "server.env.extraEnv", "['OLLAMA_NOPRUNE=1']"),
    _case("stop-not-a-list", "local", _local(_parameters(stop="</s>")), "model.parameters.stop", "'</s>'"),
    _case("host-not-an-object", "a10", {"profile": "a10", "host": HOST_ADDRESS}, "host", f"'{HOST_ADDRESS}'"),
    # Unknown keys: typos get a hint, anything else the list of keys that exist there.
    _case("typo-top-level", "local", _local({"hostt": HOST_ADDRESS}), "hostt", f"'{HOST_ADDRESS}'",
          "did you mean 'host'?"),
    _case("typo-in-server-env", "local", _local(_env(kvCachType="q8_0")), "server.env.kvCachType", "'q8_0'",
          "did you mean 'kvCacheType'?"),
    _case("typo-in-parameters", "a10", _a10(_parameters(numCxt=16384)), "model.parameters.numCxt", "16384",
          "did you mean 'numCtx'?"),
    _case("typo-in-host-prep", "a10", _a10({"hostPrep": {"cgroupfix": True}}), "hostPrep.cgroupfix", "True",
          "did you mean 'cgroupFix'?"),
    _case("typo-in-self-heal", "local", _local({"server": {"selfHeal": {"probeInterval": 5}}}),
          "server.selfHeal.probeInterval", "5", "did you mean 'probeIntervalSeconds'?"),
    _case("unknown-key-no-lookalike", "local", _local({"banana": "yellow"}), "banana", "'yellow'",
          "known keys here:"),
    # Out of range.
    _case("port-zero", "local", _local({"server": {"port": 0}}), "server.port", "0"),
    _case("port-too-high", "local", _local({"server": {"port": 70000}}), "server.port", "70000"),
    _case("ssh-port-too-high", "a10", _a10({"host": {"port": 70000}}), "host.port", "70000"),
    _case("num-parallel-zero", "a10", _a10(_env(numParallel=0)), "server.env.numParallel", "0"),
    _case("gpu-overhead-64gib", "a10", _a10(_env(gpuOverhead="64GiB")), "server.env.gpuOverhead", "'64GiB'"),
    _case("max-loaded-models-too-many", "a10", _a10(_env(maxLoadedModels=9)), "server.env.maxLoadedModels", "9"),
    _case("num-ctx-tiny", "local", _local(_parameters(numCtx=100, numPredict=50)), "model.parameters.numCtx", "100"),
    _case("top-p-above-one", "local", _local(_parameters(topP=1.5)), "model.parameters.topP", "1.5"),
    _case("probe-interval-one-second", "local", _local({"server": {"selfHeal": {"probeIntervalSeconds": 1}}}),
          "server.selfHeal.probeIntervalSeconds", "1"),
    _case("tolerance-above-one", "local", _local({"verification": {"tolerance": 1.5}}), "verification.tolerance", "1.5"),
    _case("client-timeout-too-short", "local", _local({"client": {"timeoutSeconds": 5}}), "client.timeoutSeconds", "5"),
    # The answer budget must leave room for a prompt.
    _case("num-predict-equals-num-ctx", "a10", _a10(_parameters(numCtx=32768, numPredict=32768)),
          "model.parameters.numPredict", "32768"),
    _case("num-predict-above-num-ctx", "local", _local(_parameters(numPredict=9000)),
          "model.parameters.numPredict", "9000"),
    # A quantized KV cache needs flash attention, or Ollama quietly falls back to f16.
    _case("kv-q8-without-flash-attention", "a10", _a10(_env(flashAttention=False, kvCacheType="q8_0")),
          "server.env.kvCacheType", "'q8_0'"),
    _case("kv-q4-without-flash-attention", "local", _local(_env(flashAttention=False, kvCacheType="q4_0")),
          "server.env.kvCacheType", "'q4_0'"),
    _case("kv-type-unknown", "local", _local(_env(kvCacheType="q5_1")), "server.env.kvCacheType", "'q5_1'"),
    # Images must name one build.
    _case("image-latest", "a10", _a10({"server": {"image": "ollama/ollama:latest"}}), "server.image",
          "'ollama/ollama:latest'"),
    _case("image-untagged", "local", _local({"server": {"image": "ollama/ollama"}}), "server.image", "'ollama/ollama'"),
    _case("image-registry-port-no-tag", "local", _local({"server": {"image": "registry.example:5000/ollama/ollama"}}),
          "server.image", "'registry.example:5000/ollama/ollama'"),
    # The API has no authentication: publishing it beyond loopback is an explicit choice.
    _case("public-bind-without-opt-in", "a10", _a10({"server": {"bindAddress": "0.0.0.0"}}),
          "server.bindAddress", "'0.0.0.0'", "allowPublicBind"),
    _case("public-bind-ipv6-without-opt-in", "local", _local({"server": {"bindAddress": "::"}}),
          "server.bindAddress", "'::'", "allowPublicBind"),
    _case("bind-address-not-an-ip", "local", _local({"server": {"bindAddress": "localhost"}}),
          "server.bindAddress", "'localhost'"),
    # Env vars through extraEnv: typed ones have their own key, unknown ones do nothing.
    _case("typed-kv-cache-type-via-extra-env", "a10", _a10(_env(extraEnv={"OLLAMA_KV_CACHE_TYPE": "q8_0"})),
          "server.env.extraEnv.OLLAMA_KV_CACHE_TYPE", "'q8_0'", "server.env.kvCacheType"),
    _case("typed-gpu-overhead-via-extra-env", "a10", _a10(_env(extraEnv={"OLLAMA_GPU_OVERHEAD": "1073741824"})),
          "server.env.extraEnv.OLLAMA_GPU_OVERHEAD", "'1073741824'", "server.env.gpuOverhead"),
    _case("env-var-not-read-by-pinned-version", "a10", _a10(_env(extraEnv={"OLLAMA_NUM_GPU": "999"})),
          "server.env.extraEnv.OLLAMA_NUM_GPU", "'999'", "OLLAMA_NOPRUNE"),
    # Profile and SSH target.
    _case("profile-unknown", "a10", remote_config("a100"), "profile", "'a100'", "pulumi config set profile"),
    _case("profile-missing", "local", {}, "profile", "(not set)"),
    _case("host-key-missing", "a10",
          {"profile": "a10", "host": {"address": HOST_ADDRESS}}, "host.hostKey", "(not set)"),
    _case("host-key-without-type", "a10", remote_config("a10", hostKey=HOST_KEY.split()[1]),
          "host.hostKey", f"'{HOST_KEY.split()[1]}'", "ssh-keyscan"),
    _case("host-key-with-host-name", "a10", remote_config("a10", hostKey=f"{HOST_ADDRESS} {HOST_KEY}"),
          "host.hostKey", f"'{HOST_ADDRESS} {HOST_KEY}'", "without the host name"),
    # Removed: a machine-local socket path in the stack file would be dead on every other machine.
    _case("agent-socket-in-stack-file", "a10", remote_config("a10", sshAgentSocket="/run/agent.sock"),
          "host.sshAgentSocket", "'/run/agent.sock'", "known keys here"),
    _case("no-private-key-and-no-agent", "v100",
          {"profile": "v100", "host": {"address": HOST_ADDRESS, "hostKey": HOST_KEY}},
          "sshPrivateKey", "(not set)", "pulumi config set --secret sshPrivateKey"),
    # Values Ollama would silently ignore or misread.
    _case("wildcard-origin", "local", _local(_env(origins=["http://a.example", "*"])), "server.env.origins",
          "['http://a.example', '*']"),
    _case("keep-alive-not-a-duration", "a10", _a10(_env(keepAlive="forever")), "server.env.keepAlive", "'forever'",
          "'5m'"),
    _case("keep-alive-without-unit", "local", _local(_env(keepAlive="300")), "server.env.keepAlive", "'300'"),
    _case("load-timeout-in-words", "a10", _a10(_env(loadTimeout="10 minutes")), "server.env.loadTimeout",
          "'10 minutes'"),
    _case("pull-timeout-in-words", "a10", _a10({"model": {"pullTimeout": "2 hours"}}), "model.pullTimeout",
          "'2 hours'"),
    _case("alias-equals-base", "a10", _a10({"model": {"alias": A10_BASE}}), "model.alias", f"'{A10_BASE}'",
          "own name"),
    _case("fingerprint-lowercase", "a10",
          _a10({"hostPrep": {"nvidiaKeyFingerprint": "c95b321b61e88c1809c4f759ddcae044f796ecb0"}}),
          "hostPrep.nvidiaKeyFingerprint", "'c95b321b61e88c1809c4f759ddcae044f796ecb0'"),
    _case("fingerprint-short-id", "a10", _a10({"hostPrep": {"nvidiaKeyFingerprint": "DDCAE044F796ECB0"}}),
          "hostPrep.nvidiaKeyFingerprint", "'DDCAE044F796ECB0'"),
    _case("toolkit-version-latest", "a10", _a10({"hostPrep": {"toolkitVersion": "latest"}}),
          "hostPrep.toolkitVersion", "'latest'"),
    _case("container-name-with-space", "local", _local({"server": {"containerName": "my ollama"}}),
          "server.containerName", "'my ollama'"),
    _case("restart-policy-no", "local", _local({"server": {"restart": "no"}}), "server.restart", "'no'"),
    _case("use-mlock-snake-case", "a10", _a10(_parameters(use_mlock=1)), "model.parameters.use_mlock", "1",
          "keepAlive"),
    # Values that used to reach a shell as code: the transport carries them safely now, and they
    # are refused before that as what they are not (a model name, an image reference).
    _case("base-ends-the-old-heredoc", "a10", _a10({"model": {"base": BREAKOUT}}), "model.base", repr(BREAKOUT)),
    _case("image-ends-the-old-heredoc", "a10", _a10({"server": {"image": BREAKOUT}}), "server.image", repr(BREAKOUT)),
    _case("alias-command-substitution", "local", _local({"model": {"alias": "$(touch pwned)"}}), "model.alias",
          "'$(touch pwned)'"),
    # Image references (the distribution reference grammar).
    _case("image-bad-digest", "local", _local({"server": {"image": "ollama/ollama@sha256:abc"}}), "server.image",
          "'ollama/ollama@sha256:abc'"),
    _case("image-short-sha256", "local", _local({"server": {"image": "ollama/ollama@sha256:" + "0" * 63}}),
          "server.image", repr("ollama/ollama@sha256:" + "0" * 63)),
    _case("image-option-like", "local", _local({"server": {"image": "--privileged"}}), "server.image", "'--privileged'"),
    _case("image-uppercase-path", "local", _local({"server": {"image": "ollama/Ollama:0.24.0"}}), "server.image",
          "'ollama/Ollama:0.24.0'"),
    _case("image-latest-trailing-space", "local", _local({"server": {"image": "ollama/ollama:latest "}}),
          "server.image", "'ollama/ollama:latest '"),
    # Model and alias names (Ollama's types/model/name.go).
    *[
        _case(f"base-{case_id}", "local", _local({"model": {"base": name}}), "model.base", repr(name))
        for case_id, name in [
            ("empty", ""), ("space", "qwen3 30b"), ("semicolon", "qwen3;id"), ("quote", "qwen3'x"),
            ("leading-dash", "-qwen3"), ("newline", "qwen3\nid"), ("rtl-mark", "\u202eqwen3"),
            ("empty-tag", "mine:"), ("empty-namespace", "a//b"), ("ftp-scheme", "ftp://h/n/m:t"),
        ]
    ],
    _case("base-thousands-of-characters", "local", _local({"model": {"base": "q" * 5000}}), "model.base",
          f"'{'q' * 119}… (5002 characters)"),
    _case("alias-empty-tag", "local", _local({"model": {"alias": "mine:"}}), "model.alias", "'mine:'"),
    _case("alias-differs-from-base-only-in-case", "a10", _a10({"model": {"alias": A10_BASE.upper()}}), "model.alias",
          repr(A10_BASE.upper()), "own name"),
    _case("alias-is-base-with-default-tag", "local",
          _local({"model": {"base": "tinyllama", "alias": "library/tinyllama:latest"}}), "model.alias",
          "'library/tinyllama:latest'"),
    # Docker names.
    _case("container-name-one-character", "local", _local({"server": {"containerName": "o"}}), "server.containerName", "'o'"),
    _case("volume-name-path", "local", _local({"server": {"modelsVolume": "../etc"}}), "server.modelsVolume", "'../etc'"),
    _case("volume-name-leading-dash", "local", _local({"server": {"modelsVolume": "-v"}}), "server.modelsVolume", "'-v'"),
    # SSH target.
    _case("user-option-like", "a10", remote_config("a10", user="-oProxyCommand=id"), "host.user", "'-oProxyCommand=id'"),
    _case("user-with-shell", "a10", remote_config("a10", user="ubuntu;id"), "host.user", "'ubuntu;id'"),
    _case("address-option-like", "a10", remote_config("a10", address="-oProxyCommand=id"), "host.address",
          "'-oProxyCommand=id'"),
    _case("address-not-an-ip", "a10", remote_config("a10", address="256.1.1.1"), "host.address", "'256.1.1.1'"),
    _case("address-with-space", "a10", remote_config("a10", address="my vm"), "host.address", "'my vm'"),
    _case("address-scoped-ipv6", "a10", remote_config("a10", address="fe80::1%eth0"), "host.address", "'fe80::1%eth0'"),
    _case("address-empty", "a10", remote_config("a10", address=""), "host.address", "''"),
    _case("host-key-type-mismatch", "a10", remote_config("a10", hostKey="ssh-rsa " + HOST_KEY.split()[1]),
          "host.hostKey", repr("ssh-rsa " + HOST_KEY.split()[1]), "ssh-keyscan"),
    _case("host-key-not-base64", "a10", remote_config("a10", hostKey="ssh-ed25519 AAAA!!!!"), "host.hostKey",
          "'ssh-ed25519 AAAA!!!!'"),
    _case("host-key-truncated-blob", "a10", remote_config("a10", hostKey=HOST_KEY[:-8]), "host.hostKey", repr(HOST_KEY[:-8])),
    _case("host-key-is-a-private-key", "a10", remote_config("a10", hostKey=PRIVATE_KEY), "host.hostKey",
          "(not shown: it looks like a private key)", "treat that private key as leaked"),
    _case("agent-socket-empty", "a10", remote_config("a10", sshAgentSocket=""), "host.sshAgentSocket", "''"),
    _case("agent-socket-relative", "a10", remote_config("a10", sshAgentSocket="agent.sock"), "host.sshAgentSocket",
          "'agent.sock'"),
    # CORS: the API has no authentication, so any site is an explicit choice.
    _case("origin-any-http-site", "local", _local(_env(origins=["http://*"])), "server.env.origins", "['http://*']",
          "allowWildcardOrigins"),
    _case("origin-any-dot-com-site", "local", _local(_env(origins=["https://*.com"])), "server.env.origins",
          "['https://*.com']"),
    _case("origin-comma-smuggles-a-wildcard", "local", _local(_env(origins=["http://a.example,*"])),
          "server.env.origins[0]", "'http://a.example,*'"),
    _case("origin-with-newline", "local", _local(_env(origins=["http://a.example\nx"])), "server.env.origins[0]",
          repr("http://a.example\nx")),
    # Env values end up in the container's environment: no NUL or control characters.
    _case("extra-env-nul", "local", _local(_env(extraEnv={"OLLAMA_NOPRUNE": "1\x00"})),
          "server.env.extraEnv.OLLAMA_NOPRUNE", repr("1\x00")),
    _case("extra-env-newline", "local", _local(_env(extraEnv={"OLLAMA_NOPRUNE": "1\nOLLAMA_HOST=0.0.0.0"})),
          "server.env.extraEnv.OLLAMA_NOPRUNE", repr("1\nOLLAMA_HOST=0.0.0.0")),
    _case("extra-env-escape", "local", _local(_env(extraEnv={"OLLAMA_NOPRUNE": "\x1b[31m"})),
          "server.env.extraEnv.OLLAMA_NOPRUNE", repr("\x1b[31m")),
    _case("extra-env-list", "local", _local(_env(extraEnv={"OLLAMA_NOPRUNE": ["1"]})),
          "server.env.extraEnv.OLLAMA_NOPRUNE", "['1']"),
    _case("stop-nul", "local", _local(_parameters(stop=["\x00"])), "model.parameters.stop[0]", repr("\x00")),
    _case("stop-empty", "local", _local(_parameters(stop=[""])), "model.parameters.stop[0]", "''"),
    # Strict types: what `pulumi config set --path` stores is a boolean or an integer, not text.
    _case("port-true", "local", _local({"server": {"port": True}}), "server.port", "True"),
    _case("allow-public-bind-yes", "a10", _a10({"server": {"allowPublicBind": "yes"}}), "server.allowPublicBind", "'yes'"),
    _case("flash-attention-one", "local", _local(_env(flashAttention=1)), "server.env.flashAttention", "1"),
    _case("num-ctx-float", "local", _local(_parameters(numCtx=2048.5)), "model.parameters.numCtx", "2048.5"),
    _case("warm-text", "local", _local({"model": {"warm": "true"}}), "model.warm", "'true'"),
    _case("host-ram-true", "a10", _a10({"hardware": {"hostRam": True}}), "hardware.hostRam", "True"),
    # Numbers: finite, and within what Ollama's parsers and runners take.
    _case("temperature-nan", "local", _local(_parameters(temperature=float("nan"))), "model.parameters.temperature", "nan"),
    _case("top-p-nan-text", "local", _local(_parameters(topP="nan")), "model.parameters.topP", "'nan'"),
    _case("repeat-penalty-infinite", "local", _local(_parameters(repeatPenalty=float("inf"))),
          "model.parameters.repeatPenalty", "inf"),
    _case("presence-penalty-beyond-float32", "local", _local(_parameters(presencePenalty=1e39)),
          "model.parameters.presencePenalty", "1e+39"),
    _case("seed-beyond-uint32", "local", _local(_parameters(seed=2**32)), "model.parameters.seed", str(2**32)),
    _case("seed-below-minus-one", "local", _local(_parameters(seed=-2)), "model.parameters.seed", "-2"),
    _case("num-gpu-beyond-int32", "a10", _a10(_parameters(numGpu=2**31)), "model.parameters.numGpu", str(2**31)),
    _case("top-k-beyond-int32", "local", _local(_parameters(topK=2**63)), "model.parameters.topK", str(2**63)),
    _case("num-keep-beyond-int32", "local", _local(_parameters(numKeep=2**31)), "model.parameters.numKeep", str(2**31)),
    _case("repeat-last-n-beyond-int32", "local", _local(_parameters(repeatLastN=2**31)),
          "model.parameters.repeatLastN", str(2**31)),
    # Found by the property test: the planner refused GPU figures on a CPU-only stack with a traceback.
    _case("gpu-free-vram-on-cpu-profile", "local", _local({"hardware": {"gpuFreeVram": "22.5GiB"}}),
          "hardware.gpuFreeVram", str(int(22.5 * 2**30)), "GPU profile"),
    _case("gpu-free-vram-zero", "a10", _a10({"hardware": {"gpuFreeVram": 0}}), "hardware.gpuFreeVram", "0"),
    _case("gpu-free-vram-1000-pib", "a10", _a10({"hardware": {"gpuFreeVram": "1000PiB"}}), "hardware.gpuFreeVram",
          "'1000PiB'"),
    _case("host-ram-zero", "a10", _a10({"hardware": {"hostRam": 0}}), "hardware.hostRam", "0"),
    _case("gpu-bandwidth-infinite", "a10", _a10({"hardware": {"gpuBandwidthGbps": float("inf")}}),
          "hardware.gpuBandwidthGbps", "inf"),
    _case("host-ram-bandwidth-absurd", "a10", _a10({"hardware": {"hostRamBandwidthGbps": 1e12}}),
          "hardware.hostRamBandwidthGbps", "1000000000000.0"),
    _case("keep-alive-beyond-go", "a10", _a10(_env(keepAlive="2562048h")), "server.env.keepAlive", "'2562048h'", "2562047h"),
    _case("keep-alive-number-other-than-minus-one", "a10", _a10(_env(keepAlive=300)), "server.env.keepAlive", "300"),
    _case("load-timeout-zero", "a10", _a10(_env(loadTimeout="0s")), "server.env.loadTimeout", "'0s'"),
    _case("pull-timeout-zero", "a10", _a10({"model": {"pullTimeout": "0s"}}), "model.pullTimeout", "'0s'"),
    _case("pull-timeout-one-nanosecond", "a10", _a10({"model": {"pullTimeout": "1ns"}}), "model.pullTimeout", "'1ns'"),
    _case("pull-timeout-beyond-go", "a10", _a10({"model": {"pullTimeout": "9999999h"}}), "model.pullTimeout", "'9999999h'"),
    _case("nvidia-repo-url-with-bracket", "a10", _a10({"hostPrep": {"nvidiaRepoUrl": "https://x.example/] trusted=yes"}}),
          "hostPrep.nvidiaRepoUrl", "'https://x.example/] trusted=yes'"),
    _case("gguf-path-empty", "a10", _a10({"model": {"ggufPath": ""}}), "model.ggufPath", "''"),
    # A flat key from `pulumi config set host.address x` without --path.
    _case("flat-host-address", "a10", {**remote_config("a10"), "host.address": HOST_ADDRESS}, "host.address",
          f"'{HOST_ADDRESS}'", "--path"),
    *[
        _case(f"removed-parameter-{name}", "a10", _a10(_parameters(**{_camel(name): True})),
              f"model.parameters.{_camel(name)}", "True", fix)
        for name, fix in knobs.REMOVED_MODELFILE_PARAMETERS.items()
    ],
    *[
        _case(f"removed-env-{name}", "a10", _a10(_env(extraEnv={name: "1"})), f"server.env.extraEnv.{name}", "'1'", fix)
        for name, fix in knobs.REMOVED_ENV_VARS.items()
    ],
    # The second engine: its own section, and what llama-server would silently ignore.
    _case("engine-unknown", "a10", _a10({"server": {"engine": "vllm"}}), "server.engine", "'vllm'"),
    _case("llama-image-unpinned", "a10", _a10({"llamaServer": {"image": "ghcr.io/ggml-org/llama.cpp"}}),
          "llamaServer.image", "'ghcr.io/ggml-org/llama.cpp'", "version tag"),
    _case("llama-image-injection", "a10", _a10({"llamaServer": {"image": BREAKOUT}}), "llamaServer.image", repr(BREAKOUT)),
    _case("llama-container-name", "a10", _a10({"llamaServer": {"containerName": "-x"}}), "llamaServer.containerName", "'-x'"),
    _case("n-cpu-moe-missing", "a10", _a10({"llamaServer": {"placement": "nCpuMoe"}}), "llamaServer.nCpuMoe", "(not set)",
          "number of layers"),
    _case("n-cpu-moe-with-fit", "a10", _a10({"llamaServer": {"nCpuMoe": 18}}), "llamaServer.nCpuMoe", "18", "placement: nCpuMoe"),
    _case("n-cpu-moe-negative", "a10", _a10({"llamaServer": {"placement": "nCpuMoe", "nCpuMoe": -1}}),
          "llamaServer.nCpuMoe", "-1"),
    _case("n-cpu-moe-without-gpu", "local", _local({"server": {"engine": "llama-server"},
                                                    "llamaServer": {"placement": "nCpuMoe", "nCpuMoe": 4}}),
          "llamaServer.placement", "'nCpuMoe'", "placement: fit"),
    _case("llama-several-gpus", "a10", _a10({"server": {"engine": "llama-server"},
                                             "hardware": {"gpuFreeVramPerGpu": ["22GiB", "22GiB"]}}),
          "hardware.gpuFreeVramPerGpu", "[23622320128, 23622320128]", "one GPU"),
    _case("llama-num-gpu", "a10", _a10({"server": {"engine": "llama-server"}, **_parameters(numGpu=30)}),
          "model.parameters.numGpu", "30", "remove it"),
    _case("llama-stop", "a10", _a10({"server": {"engine": "llama-server"}, **_parameters(stop=["</s>"])}),
          "model.parameters.stop", "['</s>']", "each request"),
    _case("llama-extra-env", "a10", _a10({"server": {"engine": "llama-server", "env": {"extraEnv": {"OLLAMA_NOPRUNE": "1"}}}}),
          "server.env.extraEnv", "{'OLLAMA_NOPRUNE': '1'}", "server.engine: ollama"),
    _case("llama-origins", "a10", _a10({"server": {"engine": "llama-server", "env": {"origins": ["https://a.example"]}}}),
          "server.env.origins", "['https://a.example']", "gateway"),
    _case("insecure-registry-port", "a10", _a10({"hostPrep": {"dockerInsecureRegistries": ["10.0.0.5:99999"]}}),
          "hostPrep.dockerInsecureRegistries[0]", "'10.0.0.5:99999'"),
    _case("insecure-registry-injection", "a10", _a10({"hostPrep": {"dockerInsecureRegistries": ["$(touch pwned):5000"]}}),
          "hostPrep.dockerInsecureRegistries[0]", "'$(touch pwned):5000'"),
]


def assert_actionable(message: str, stack: str, key: str, shown: str, hint: Optional[str]) -> None:
    assert message.startswith(f"stack '{stack}': invalid configuration"), message
    lines = [line for line in message.splitlines() if f"ollama-gpu:{key} = " in line]
    assert len(lines) == 1, f"expected one line about {key}:\n{message}"
    line = lines[0]
    assert f"ollama-gpu:{key} = {shown}: " in line, line
    assert "Fix: " in line, line
    if hint:
        assert hint in line, line


@pytest.mark.parametrize("stack, config, key, shown, hint", INVALID_CASES)
def test_invalid_config_is_refused_with_an_actionable_message(stack, config, key, shown, hint):
    with pytest.raises(ConfigError) as refused:
        load_settings(stack, config)
    assert_actionable(str(refused.value), stack, key, shown, hint)


def test_the_table_covers_the_settings_people_copy_from_old_guides():
    assert "OLLAMA_NO_MMAP" in knobs.REMOVED_ENV_VARS
    assert "use_mlock" in knobs.REMOVED_MODELFILE_PARAMETERS
    assert len(INVALID_CASES) >= 35


def test_every_problem_is_reported_at_once():
    config = _local({"server": {"port": 0, "env": {"kvCachType": "q8_0"}}, "model": {"pullTimeout": "soon"}})
    with pytest.raises(ConfigError) as refused:
        load_settings("local", config)
    problems = str(refused.value).splitlines()[1:]
    assert [line.split(" = ")[0].strip() for line in problems] == [
        "ollama-gpu:server.port", "ollama-gpu:server.env.kvCachType", "ollama-gpu:model.pullTimeout",
    ]


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(_a10({"server": {"bindAddress": "0.0.0.0", "allowPublicBind": True}}), id="public-bind-opted-in"),
        pytest.param(_local(_env(flashAttention=False, kvCacheType="f16")), id="f16-without-flash-attention"),
        pytest.param(_local(_parameters(numCtx=8192, numPredict=8191)), id="num-predict-just-below-num-ctx"),
        pytest.param(_local({"server": {"image": "ollama/ollama@sha256:" + "0" * 64}}), id="image-by-digest"),
        pytest.param(_local({"server": {"image": "registry.example:5000/ollama/ollama:0.24.0"}}), id="image-registry-port"),
        pytest.param(_local(_env(extraEnv={"OLLAMA_NOPRUNE": "1"})), id="untyped-real-env-var"),
        pytest.param(_local(_env(keepAlive="1h30m", loadTimeout="90s")), id="go-durations"),
        pytest.param(_local(_env(gpuOverhead="16GiB")), id="gpu-overhead-at-limit"),
        pytest.param(_a10({"hostPrep": {"toolkitVersion": None}}), id="newest-toolkit"),
        # What `pulumi config set --path ... -1` and `... 1` store: numbers.
        pytest.param(_a10(_env(keepAlive=-1)), id="keep-alive-minus-one-as-a-number"),
        pytest.param(_local(_env(extraEnv={"OLLAMA_NOPRUNE": 1, "OLLAMA_SCHED_SPREAD": True})), id="extra-env-numbers"),
        pytest.param(_local({"model": {"alias": 2507, "parameters": {"stop": [1]}}}), id="names-stored-as-numbers"),
        pytest.param(_local(_parameters(topP="0.9", temperature="0.6")), id="decimals-as-text"),
        pytest.param(_a10(_env(keepAlive="-5m")), id="keep-alive-negative-duration"),
        pytest.param(_a10(_env(keepAlive="2562047h")), id="keep-alive-at-go-limit"),
        pytest.param(_local(_parameters(seed=-1)), id="seed-random"),
        pytest.param(_local(_parameters(seed=2**32 - 2, topK=2**31 - 1, numGpu=0)), id="int-option-limits"),
        pytest.param(_local(_env(origins=["https://*.example.com", "http://localhost:3000"])), id="subdomain-origin"),
        pytest.param(_local({"server": {"allowWildcardOrigins": True, "env": {"origins": ["*"]}}}), id="wildcard-opted-in"),
        pytest.param(_local({"model": {"base": "registry.local:5000/library/tinyllama:1.1b"}}), id="base-from-a-registry"),
        pytest.param(_local({"model": {"base": "http://registry.local:5000/library/tinyllama:1.1b"}}), id="base-over-http"),
        pytest.param(remote_config("a10", address="gpu-1.example.com"), id="dns-address"),
        pytest.param(remote_config("a10", address="2001:db8::10"), id="ipv6-address"),
        pytest.param(remote_config("a10", user="ec2-user"), id="user-with-dash"),
        pytest.param(_a10({"hardware": {"gpuFreeVram": "22.5GiB", "hostRam": 2**40}}), id="sizes"),
    ],
)
def test_edge_values_that_are_valid(config):
    assert load_settings("edge", config, agent_socket=AGENT_SOCKET).stack == "edge"
