"""Property-based: stack files generated from the settings schema — valid values, boundary values,
wrong types, random and hostile strings, renamed namespaces, and random edits of the YAML text —
go through `make plan`'s path (Pulumi.<stack>.yaml → the program under mocks). Each must either
render, or stop with one message that names the stack and a key (or the file's line) and says
what to fix, never a traceback. Every command a rendered stack would run is then executed under
sh and bash with stand-ins for everything that touches a host (curl, docker, apt-get, systemctl,
nvidia-ctk, sudo, ...) and only a few harmless real tools on PATH: no value may run as code,
which the hostile strings would show as a `pwned` file or a `command not found`.

Bounded for the unit suite: a few hundred examples, no deadline (the machine may be loaded).
"""

import os
import subprocess
import tempfile
import types
import typing
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings, strategies as st
from pydantic import BaseModel

from components.validation import Refused
from ollama_gpu import config_loader, knobs, shell
from ollama_gpu.errors import ConfigError
from ollama_gpu.pins import LITELLM_IMAGE
from ollama_gpu.settings import Settings
from ollama_gpu.shell import script_command
from ollama_gpu.stack_render import _format_run, run_stack_file
from tests.unit.conftest import HOST_KEY, REPO, stack_values

STACK = "fuzz"
MARKER = "pwned"
STAND_INS = ["curl", "docker", "apt-get", "apt-cache", "dpkg-query", "systemctl", "nvidia-ctk", "gpg", "install",
             "id", "usermod", "python3", "nvidia-smi", "sleep", "mkdir", "stat", "ln", "mv", "cp", "dirname", "cut"]
# Real tools the host scripts use that touch nothing but their own files and pipes.
HARMLESS = ["sh", "bash", "env", "base64", "cat", "grep", "awk", "tr", "tail", "head", "uniq", "tee", "mktemp", "rm",
            "sha256sum", "cmp", "sed"]

HOSTILE = [
    'x\nOLLAMA_GPU_SCRIPT_END)" ; touch pwned ; : "',
    "x\nOLLAMA_GPU_SCRIPT_END\ntouch pwned\n",
    "$(touch pwned)",
    "`touch pwned`",
    "'; touch pwned; '",
    '"; touch pwned; "',
    ") ; : > pwned ; (",
    "-oProxyCommand=touch${IFS}pwned",
    "--privileged",
    "a\x00b",
    "\u202eqwen3",
    "\x1b[31mred",
    "line\nbreak",
    "q" * 3000,
    "",
    " ",
    "latest ",
    "*",
    "http://*",
    "nan",
    "-1",
    "1e400",
    "22.5GiB",
    "1000PiB",
    "2562048h",
    "0s",
    "yes",
]

# Values of the right kind per key, so that mutated stacks often still render and the
# execution check sees accepted values travel through the commands.
VALID = {
    "model.base": ["tinyllama:1.1b", "qwen3:30b-a3b-thinking-2507-q8_0", "registry.local:5000/library/tinyllama:1.1b",
                   "hf.co/org/model:Q8_0", "http://10.0.0.2:5000/library/tinyllama:1.1b"],
    "model.alias": ["tinyllama-1.1b:ctx2k", "mine", "team/alias:v2", "_x"],
    "server.image": ["ollama/ollama:0.24.0", "ollama/ollama@sha256:" + "a" * 64, "localhost:5000/ollama:1"],
    "server.bindAddress": ["127.0.0.1", "::1", "0.0.0.0"],
    "server.containerName": ["ollama", "o_1.x-y"],
    "server.modelsVolume": ["ollama", "models-2"],
    "host.address": ["203.0.113.10", "gpu.example.com", "2001:db8::10", "my-vm"],
    "host.user": ["ubuntu", "root", "ec2-user", "_svc"],
    "host.hostKey": [HOST_KEY],
    "server.env.keepAlive": ["-1", -1, "5m", "1h30m", "-5m"],
    "server.env.loadTimeout": ["15m", "90s"],
    "model.pullTimeout": ["2h", "1s"],
    "server.env.origins": [["https://app.example.com"], ["https://*.example.com", "http://localhost:3000"]],
    "hostPrep.nvidiaRepoUrl": ["https://nvidia.github.io/libnvidia-container", "http://mirror.local:8080/nvidia"],
    "hostPrep.toolkitVersion": ["1.17.8-1", None],
    "hardware.gpuFreeVram": ["22.5GiB", 2**34],
    "hardware.hostRam": ["116GB", 2**37],
    "server.engine": ["ollama", "llama-server"],
    "llamaServer.image": ["ghcr.io/ggml-org/llama.cpp:server-cuda-b11312", "10.0.0.5:5000/ggml-org/llama.cpp:server-cuda-b11312"],
    "llamaServer.containerName": ["llama-server", "llama_1.x-y"],
    "llamaServer.placement": ["fit", "nCpuMoe"],
    "llamaServer.nCpuMoe": [0, 18, 48],
    "hostPrep.dockerInsecureRegistries": [["10.0.0.5:5000"], ["registry.local", "10.1.1.1:80"]],
    "hosts": [
        [{"name": "gpu1", "address": "203.0.113.10", "hostKey": HOST_KEY, "privateAddress": "10.0.0.5"},
         {"name": "gpu2", "address": "gpu2.example.com", "user": "ubuntu", "hostKey": HOST_KEY, "privateAddress": "fd00::6",
          "profile": "v100", "hardware": {"hostRam": "64GB"}}],
        [{"name": "cpu1", "address": "203.0.113.12", "hostKey": HOST_KEY, "privateAddress": "100.64.0.7", "profile": "none"}],
        [{"name": h, "address": "203.0.113.13", "hostKey": HOST_KEY, "privateAddress": "10.0.0.8"} for h in HOSTILE[:3]],
    ],
    "router.host": ["gpu1", "gpu2", "cpu1"],
    "router.bindAddress": ["127.0.0.1", "10.0.0.5", "::1", "fd00::6"],
    "router.routingStrategy": ["least-busy", "latency-based-routing", "simple-shuffle"],
    "router.image": [LITELLM_IMAGE, "ghcr.io/berriai/litellm:main-latest", "localhost:5000/litellm:1.106.12"],
}

# A fleet stack as `pulumi config set --secret --path router.masterKey` leaves it in the file.
FLEET = {
    "profile": "a10",
    "hardware": {"hostRam": "116GB"},
    "hosts": VALID["hosts"][0],
    "router": {"enabled": True, "masterKey": {"secure": "v1:c2VjcmV0IG1hc3RlciBrZXk="}},
}


def _plain_type(annotation: Any) -> Any:
    """int for Optional[Annotated[int, Strict()]], and so on."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        else:
            return annotation


def _leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    leaves = []
    for name, field in model.model_fields.items():
        if name == "stack":
            continue
        plain = _plain_type(field.annotation)
        if isinstance(plain, type) and issubclass(plain, BaseModel):
            leaves += _leaves(plain, prefix + (field.alias,))
        else:
            leaves.append((prefix + (field.alias,), field))
    return leaves


LEAVES = _leaves(Settings)

any_value = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30), st.sampled_from(HOSTILE),
    st.lists(st.one_of(st.text(max_size=10), st.sampled_from(HOSTILE)), max_size=3),
    st.dictionaries(st.text(max_size=10), st.one_of(st.text(max_size=10), st.integers()), max_size=2),
)


def _boundaries(field: Any) -> list[Any]:
    plain = _plain_type(field.annotation)
    if plain is not int and plain is not float:
        return []
    values = [0, -1, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63, -(2**63) - 1]
    for bound in field.metadata:
        for attribute in ("ge", "gt", "le", "lt"):
            limit = getattr(bound, attribute, None)
            if isinstance(limit, (int, float)):
                values += [limit - 1, limit, limit + 1] if plain is int else [limit, limit * 1.0000001, -limit]
    return values + ([float("nan"), float("inf"), 1e39, 0.5] if plain is float else [])


def _value_for(path: tuple[str, ...], field: Any) -> st.SearchStrategy:
    """Mostly values of the right kind (so that many stacks render), then boundaries and anything."""
    key = ".".join(path)
    choices = [any_value]
    boundaries = _boundaries(field)
    if boundaries:
        choices.append(st.sampled_from(boundaries))
    if key in VALID:
        choices += [st.sampled_from(VALID[key])] * 2
    if key == "server.env.extraEnv":
        names = sorted(knobs.SERVER_ENV_VARS | set(knobs.REMOVED_ENV_VARS)) + ["OLLAMA_BOGUS", "PATH"]
        choices.append(st.dictionaries(st.sampled_from(names), st.one_of(st.text(max_size=12), st.integers(), st.booleans()), max_size=3))
    return st.sampled_from(choices).flatmap(lambda strategy: strategy)


# Stop sequences travel inside the alias request, through the command text: any text is valid.
stop_sequences = st.lists(st.one_of(st.text(min_size=1), st.sampled_from([h for h in HOSTILE if h and "\x00" not in h])),
                          min_size=1, max_size=3)


@st.composite
def stack_configs(draw) -> dict[str, Any]:
    base = draw(st.sampled_from(["a10", "v100", "local", "fleet"]))
    if base == "fleet":
        values = {**FLEET, "router": {**FLEET["router"]}}
    else:
        values = stack_values(base) if base == "local" else {**stack_values(base), "host": {**stack_values(base)["host"]}}
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        path, field = draw(st.sampled_from(LEAVES))
        node = values
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = draw(_value_for(path, field))
    if draw(st.booleans()):
        values.setdefault("model", {}).setdefault("parameters", {})["stop"] = draw(stop_sequences)
    if draw(st.booleans()):
        # The second engine's commands (model file, report) and flags get their share of the examples.
        values.setdefault("server", {})["engine"] = "llama-server"
    config = {f"ollama-gpu:{key}": value for key, value in values.items()}
    extra = draw(st.sampled_from([None, "ollama_gpu:profile", "profile", "olama-gpu:server", "ollama-gpu:host.address",
                                  "ollama-gpu:bogus", "aws:region"]))
    if extra and draw(st.booleans()):
        config[extra] = draw(st.one_of(st.sampled_from(["a10", "203.0.113.10"]), any_value))
    return config


_YAML_NOISE = st.sampled_from(
    list(":-[]{}&*!|>'\"%@`#,?\t\n ") + ["\x00", "\u2028", "---\n", "<<: ", "!!python/name:os.system ", "&a ", "*a"]
)


@st.composite
def stack_files(draw) -> bytes:
    """A generated stack file with a few random edits of its text, sometimes a byte that is not UTF-8."""
    text = yaml.safe_dump({"config": draw(stack_configs())}, allow_unicode=draw(st.booleans()))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        position = draw(st.integers(min_value=0, max_value=len(text)))
        cut = draw(st.integers(min_value=0, max_value=3))
        text = text[:position] + draw(st.one_of(_YAML_NOISE, st.text(max_size=4))) + text[position + cut:]
    data = text.encode()
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        position = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:position] + b"\xff" + data[position:]
    return data


class _Sandbox:
    """Where generated stack files are written and their commands run. Hypothesis prints it with
    a failing example, so it prints short."""

    def __init__(self, root: Path, bin_dir: Path, scripts: Path):
        self.root, self.bin, self.scripts = root, bin_dir, scripts
        # Command texts already run: the same text behaves the same in a later example.
        self.executed: set[str] = set()

    def __repr__(self) -> str:
        return f"sandbox at {self.root}"


@pytest.fixture(scope="module")
def sandbox():
    """A directory for stack files and command runs, a PATH of stand-ins plus harmless tools, and
    the program's cache and offline switch pointed at it."""
    with tempfile.TemporaryDirectory() as directory, ExitStack() as stack:
        root = Path(directory)
        bin_dir = root / "bin"
        bin_dir.mkdir()
        for name in STAND_INS:
            (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / "sudo").write_text('#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n')
        for name in HARMLESS:
            real = subprocess.run(["bash", "-c", f"command -v {name}"], capture_output=True, text=True).stdout.strip()
            assert real, f"{name} is needed by the host scripts"
            (bin_dir / name).symlink_to(real)
        for tool in bin_dir.iterdir():
            tool.chmod(0o755)
        scripts = root / "scripts"
        scripts.mkdir()
        (scripts / "probe.sh").write_text(PROBE)
        stack.enter_context(mock.patch.object(config_loader, "REPO", root))
        stack.enter_context(mock.patch.dict(os.environ, {"OLLAMA_GPU_OFFLINE": "1", "OLLAMA_GPU_CACHE": str(root / "cache")}))
        os.environ.pop("SSH_AUTH_SOCK", None)
        yield _Sandbox(root, bin_dir, scripts)


def _assert_one_actionable_message(message: str) -> None:
    first = message.splitlines()[0]
    assert first.startswith(f"stack '{STACK}'"), message
    assert "ollama-gpu:" in message or f"Pulumi.{STACK}.yaml" in message, message
    assert "Fix: " in message, message
    assert "Traceback" not in message


def _run_every_command(run, sandbox) -> int:
    """Runs each rendered create/delete text the way pulumi-command hands it to a shell."""
    executed = 0
    for resource in run.resources:
        for key in ("create", "delete"):
            text = resource.inputs.get(key) if resource.type.startswith("command:") else None
            if not text or text in sandbox.executed:
                continue
            sandbox.executed.add(text)
            # `sh -c` for local stacks; the SSH user's login shell (sh or bash) for remote ones.
            for login_shell in ("sh", "bash"):
                workdir = Path(tempfile.mkdtemp(dir=sandbox.root))
                # pulumi-command feeds the resource's stdin (the create script) to create and delete alike.
                result = subprocess.run(
                    [login_shell, "-c", text], input=resource.inputs.get("stdin", ""), cwd=workdir,
                    capture_output=True, text=True, timeout=60,
                    env={"PATH": str(sandbox.bin), "HOME": str(workdir), "LC_ALL": "C.UTF-8"},
                )
                assert not (workdir / MARKER).exists(), f"{resource.name}.{key} ran a value as code:\n{text}"
                assert "not found" not in result.stderr, f"{resource.name}.{key} ran an unexpected command:\n{result.stderr}"
            executed += 1
    return executed


def _check_stack_file(content: bytes, sandbox) -> None:
    (sandbox.root / f"Pulumi.{STACK}.yaml").write_bytes(content)
    try:
        run = run_stack_file(STACK)
    except (ConfigError, Refused) as error:
        _assert_one_actionable_message(str(error))
        event("refused with one message")
        return
    _format_run(STACK, run)
    event("rendered")
    event(f"new command texts run: {_run_every_command(run, sandbox)}")


FUZZ = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(config=stack_configs())
def test_generated_stack_configs_render_or_say_what_to_fix(sandbox, config):
    """Valid, boundary, wrong-typed and hostile values, in the committed stacks' shape."""
    _check_stack_file(yaml.safe_dump({"config": config}).encode(), sandbox)


@settings(FUZZ, max_examples=100)
@given(content=stack_files())
def test_edited_stack_file_text_renders_or_says_what_to_fix(sandbox, content):
    """Random YAML: the same files with characters inserted, replaced or cut."""
    _check_stack_file(content, sandbox)


PROBE = '#!/usr/bin/env bash\nset -euo pipefail\n: "${VALUE?}"\nprintf %s "$VALUE" >value\n'


@settings(FUZZ, max_examples=100)
@given(value=st.one_of(st.text(), st.builds("".join, st.lists(st.one_of(st.text(max_size=5), st.sampled_from(HOSTILE))))),
       sudo=st.booleans())
def test_any_text_reaches_a_script_intact_and_never_runs(sandbox, value, sudo):
    """The transport itself, without validation in front: any text but NUL arrives byte for byte."""
    with mock.patch.object(shell, "SCRIPTS", sandbox.scripts):
        if "\x00" in value:
            with pytest.raises(ValueError, match="NUL"):
                script_command("probe.sh", {"VALUE": value}, "probe", sudo=sudo)
            return
        command = script_command("probe.sh", {"VALUE": value}, "probe", sudo=sudo)
    workdir = Path(tempfile.mkdtemp(dir=sandbox.root))
    result = subprocess.run(["bash", "-c", command.line], input=command.stdin.encode(), cwd=workdir, capture_output=True, timeout=60,
                            env={"PATH": str(sandbox.bin), "HOME": str(workdir)})
    assert result.returncode == 0, result.stderr
    assert (workdir / "value").read_bytes() == value.encode()
    assert not (workdir / MARKER).exists()


def test_the_committed_stack_files_pass_the_same_checks(sandbox):
    for stack in ("a10", "v100", "local"):
        content = (REPO / f"Pulumi.{stack}.yaml").read_bytes()
        (sandbox.root / f"Pulumi.{STACK}.yaml").write_bytes(content)
        run = run_stack_file(STACK)
        sandbox.executed.clear()
        assert _run_every_command(run, sandbox) >= 3
