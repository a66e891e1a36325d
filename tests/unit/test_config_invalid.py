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
    _case("typo-top-level", "local", _local({"hots": HOST_ADDRESS}), "hots", f"'{HOST_ADDRESS}'",
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
    *[
        _case(f"removed-parameter-{name}", "a10", _a10(_parameters(**{_camel(name): True})),
              f"model.parameters.{_camel(name)}", "True", fix)
        for name, fix in knobs.REMOVED_MODELFILE_PARAMETERS.items()
    ],
    *[
        _case(f"removed-env-{name}", "a10", _a10(_env(extraEnv={name: "1"})), f"server.env.extraEnv.{name}", "'1'", fix)
        for name, fix in knobs.REMOVED_ENV_VARS.items()
    ],
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
    ],
)
def test_edge_values_that_are_valid(config):
    assert load_settings("edge", config, agent_socket=AGENT_SOCKET).stack == "edge"
