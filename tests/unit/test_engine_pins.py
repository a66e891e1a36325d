"""The Python SDKs and the providers scripts/dev/build-pulumi-engine.sh builds must agree: each SDK
asks the engine for the plugin version equal to its own, and the built engine has only the pinned one."""

import re

from ollama_gpu.pins import PINS_FILE, read_pins

CONSTRAINTS = PINS_FILE.parent / "constraints.txt"


def constrained_version(distribution: str) -> str:
    match = re.search(rf"^{distribution}==(\S+)$", CONSTRAINTS.read_text(), re.MULTILINE)
    assert match, f"constraints.txt pins no {distribution}"
    return match.group(1)


def test_built_providers_are_the_versions_the_sdks_ask_for() -> None:
    pins = read_pins()
    assert constrained_version("pulumi_command") == pins["PULUMI_COMMAND_VERSION"]
    assert constrained_version("pulumi_docker") == pins["PULUMI_DOCKER_VERSION"]
