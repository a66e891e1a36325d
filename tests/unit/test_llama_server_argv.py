"""Knob truth for llama-server: every flag the program renders exists in the pinned build (its own
`--help`, captured in ollama_gpu/llama_server_help/ and read by ollama_gpu.llama_server_flags), the
defaults the renderer leaves out are that build's defaults, and no rendered flag repeats one, so
none is a no-op. Flags the help gives no default for are argued in ollama_gpu/llama_server_argv.py.
The stacks cover both placements, a CPU stack, a multi-slot stack and every model parameter with a
server-wide flag."""

import re

import pytest

from ollama_gpu.config_loader import load_settings
from ollama_gpu.llama_server_argv import BUILD_DEFAULTS, PARAMETER_FLAGS, server_arguments
from ollama_gpu.llama_server_flags import pinned_flags
from tests.unit.conftest import AGENT_SOCKET, local_config, remote_config

LLAMA = {"server": {"engine": "llama-server"}}
EVERY_PARAMETER = {
    "numPredict": 1000, "numBatch": 1024, "mainGpu": 1, "numThread": 8, "seed": 7, "topK": 20, "topP": 0.8,
    "minP": 0.1, "typicalP": 0.9, "repeatLastN": 128, "temperature": 0.6, "repeatPenalty": 1.1,
    "presencePenalty": 0.5, "frequencyPenalty": 0.2, "useMmap": False,
}
STACKS = {
    "a10-fit": ("a10", remote_config("a10", LLAMA)),
    "v100-fit": ("v100", remote_config("v100", LLAMA)),
    "a10-n-cpu-moe": ("a10", remote_config("a10", {**LLAMA, "llamaServer": {"placement": "nCpuMoe", "nCpuMoe": 18}})),
    "cpu": ("local", local_config(LLAMA)),
    "slots": ("a10", remote_config("a10", {"server": {"engine": "llama-server", "env": {"numParallel": 4, "kvCacheType": "f16"}}})),
    "every-parameter": ("a10", remote_config("a10", {**LLAMA, "model": {"parameters": EVERY_PARAMETER}})),
}
_DEFAULT = re.compile(r"default: '?([^,')\s]+)")


def _rendered(stack: str, config: dict) -> list[tuple[str, str | None]]:
    argv = server_arguments(load_settings(stack, config, agent_socket=AGENT_SOCKET), "/models/model.gguf")
    pairs = []
    for index, word in enumerate(argv):
        if word.startswith("--"):
            value = argv[index + 1] if index + 1 < len(argv) and not argv[index + 1].startswith("--") else None
            pairs.append((word, value))
    return pairs


def _help_default(flag: str) -> str:
    match = _DEFAULT.search(pinned_flags()[flag].help)
    assert match, f"the pinned build's help gives no default for {flag}: {pinned_flags()[flag].help!r}"
    return match.group(1)


@pytest.mark.parametrize("stack, config", STACKS.values(), ids=STACKS.keys())
def test_every_rendered_flag_exists_in_the_pinned_build(stack, config):
    argv = server_arguments(load_settings(stack, config, agent_socket=AGENT_SOCKET), "/models/model.gguf")
    # Read as the server reads its arguments: a flag it lacks, or a value taken for a flag, shows here.
    assert pinned_flags().unknown_options(argv) == [], argv


@pytest.mark.parametrize("stack, config", STACKS.values(), ids=STACKS.keys())
def test_no_rendered_flag_is_the_builds_default(stack, config):
    for flag, value in _rendered(stack, config):
        if flag in BUILD_DEFAULTS:
            assert float(value) != float(_help_default(flag)) if _is_number(value) else value != _help_default(flag), flag


def test_the_defaults_left_out_are_the_pinned_builds():
    for flag, default in BUILD_DEFAULTS.items():
        assert _help_default(flag) == default, flag


def test_every_flag_the_renderer_knows_is_in_the_pinned_build():
    known = {flag for flags in PARAMETER_FLAGS.values() for flag in flags} | set(BUILD_DEFAULTS)
    known |= {"--model", "--alias", "--n-cpu-moe"}
    assert known <= pinned_flags().names, sorted(known - pinned_flags().names)


def test_value_flags_take_a_value_and_switches_take_none():
    flags = pinned_flags()
    for stack, config in STACKS.values():
        for flag, value in _rendered(stack, config):
            assert (flags[flag].value_hint is None) == (value is None), (flag, value, flags[flag].value_hint)


def test_every_parameter_with_a_server_flag_reaches_the_command_line():
    rendered = dict(_rendered(*STACKS["every-parameter"]))
    for flags in PARAMETER_FLAGS.values():
        for flag in flags:
            assert flag in rendered, flag
    assert rendered["--temp"] == "0.6" and rendered["--load-mode"] == "none"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
