"""Executes what the Pulumi program emits, taken from its own resolved resources.

The program runs under the recording mocks (ollama_gpu.offline); this module turns the registered
docker Container/Volume inputs into `docker` CLI calls and runs the registered command texts, so
the tests exercise the program's output rather than a retyped copy. Translation is strict: an
input it does not know fails the test instead of being silently dropped.
"""

import json
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import Any

from pulumi.runtime import rpc

from ollama_gpu.offline import ProgramRun, RecordedResource, run_program

CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"
# Inputs the provider acts on itself rather than passing to the engine; the harness emulates them.
PROVIDER_BEHAVIOUR = {"wait", "waitTimeout", "mustRun"}
# Files the provider copies into the container between create and start (copy_uploads does it here).
COPIED_AFTER_CREATE = {"uploads"}


def render(stack: str, config: dict[str, Any], secret_keys: list[str] | None = None) -> ProgramRun:
    return run_program(stack, config, secret_keys=secret_keys)


def _int(value: Any) -> int:
    return int(float(value))


def docker_create_args(container: RecordedResource, image: str) -> list[str]:
    """`docker create` arguments equivalent to the registered Container inputs, with IMAGE in
    place of the official image (which cannot be pulled here)."""
    inputs = dict(container.inputs)
    args = ["--name", inputs.pop("name")]
    inputs.pop("image")
    # The provider sets the whole list as the entrypoint (and no command); the CLI takes only the
    # executable, so the rest follows the image as the command: the process runs the same argv.
    entrypoint = inputs.pop("entrypoints", [])
    if entrypoint:
        args += ["--entrypoint", entrypoint[0]]
    for entry in inputs.pop("envs", []):
        args += ["--env", entry]
    if network := inputs.pop("networkMode", None):
        args += ["--network", network]
    for port in inputs.pop("ports", []):
        args += ["--publish", f"{port.get('ip', '0.0.0.0')}:{_int(port['external'])}:{_int(port['internal'])}"]
    for volume in inputs.pop("volumes", []):
        args += ["--volume", f"{volume['volumeName']}:{volume['containerPath']}"]
    for label in inputs.pop("labels", []):
        args += ["--label", f"{label['label']}={label['value']}"]
    if gpus := inputs.pop("gpus", None):
        args += ["--gpus", gpus]
    if inputs.pop("init", False):
        args.append("--init")
    if restart := inputs.pop("restart", None):
        args += ["--restart", restart]
    if log_driver := inputs.pop("logDriver", None):
        args += ["--log-driver", log_driver]
    for key, value in inputs.pop("logOpts", {}).items():
        args += ["--log-opt", f"{key}={value}"]
    if check := inputs.pop("healthcheck", None):
        test = check["tests"]
        if test[0] != "CMD" or test[1:3] != ["bash", "-c"]:
            raise AssertionError(f"unexpected health check form: {test[:3]}")
        # The CLI only has the shell form; quoting the exec form's arguments runs the same argv.
        args += [
            "--health-cmd", shlex.join(test[1:]),
            "--health-interval", check["interval"],
            "--health-timeout", check["timeout"],
            "--health-retries", str(_int(check["retries"])),
            "--health-start-period", check["startPeriod"],
        ]  # fmt: skip
    # The provider's `command` replaces the image's CMD, as arguments after the image do.
    command = inputs.pop("command", [])
    leftover = set(inputs) - PROVIDER_BEHAVIOUR - COPIED_AFTER_CREATE
    if leftover:
        raise AssertionError(f"container inputs the harness does not translate: {sorted(leftover)}")
    return [*args, image, *entrypoint[1:], *command]


def revealed(value: Any) -> Any:
    """A recorded input with the secret marking taken off, as the provider receives it."""
    if isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig:
        return revealed(value["value"])
    if isinstance(value, dict):
        return {key: revealed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [revealed(item) for item in value]
    return value


def copy_uploads(container: RecordedResource) -> None:
    """What the provider does with `uploads` after creating the container: each `content` becomes
    the file at `file` inside it."""
    for upload in revealed(container.inputs.get("uploads", [])):
        leftover = set(upload) - {"file", "content"}
        if leftover:
            raise AssertionError(f"upload inputs the harness does not translate: {sorted(leftover)}")
        with tempfile.NamedTemporaryFile("w", suffix=".upload") as source:
            source.write(upload["content"])
            source.flush()
            subprocess.run(["docker", "cp", source.name, f"{container.inputs['name']}:{upload['file']}"], check=True, capture_output=True)


@dataclass
class LocalDeployment:
    """The local stack's container and volume, created on the real engine from the program's spec."""

    run: ProgramRun
    image: str
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def container(self) -> RecordedResource:
        return self.run.of_type(CONTAINER)[0]

    @property
    def name(self) -> str:
        return self.container.inputs["name"]

    def create(self, tampered_env: dict[str, str] | None = None) -> None:
        """Creates the volume (if absent) and the container; `tampered_env` overrides env entries
        to simulate a host where a setting did not take effect."""
        volume = self.run.of_type(VOLUME)[0].inputs
        labels = [f"--label={item['label']}={item['value']}" for item in volume.get("labels", [])]
        subprocess.run(["docker", "volume", "create", *labels, volume["name"]], check=True, capture_output=True)
        container = self.container
        if tampered_env:
            kept = [e for e in container.inputs["envs"] if e.split("=", 1)[0] not in tampered_env]
            envs = kept + [f"{key}={value}" for key, value in tampered_env.items()]
            container = replace(container, inputs={**container.inputs, "envs": envs})
        subprocess.run(["docker", "create", *docker_create_args(container, self.image)], check=True, capture_output=True)
        subprocess.run(["docker", "start", self.name], check=True, capture_output=True)
        self.wait_healthy(_int(self.container.inputs["waitTimeout"]))

    def remove_container(self) -> None:
        subprocess.run(["docker", "rm", "--force", self.name], check=False, capture_output=True)

    def inspect(self) -> dict[str, Any]:
        out = subprocess.run(["docker", "inspect", self.name], check=True, capture_output=True, text=True).stdout
        return json.loads(out)[0]

    def health(self) -> str:
        return self.inspect()["State"].get("Health", {}).get("Status", "none")

    def wait_healthy(self, timeout_seconds: float) -> float:
        """What the provider's `wait` does: block until Docker reports the health check passing."""
        started = time.monotonic()
        while self.health() != "healthy":
            if time.monotonic() - started > timeout_seconds:
                raise AssertionError(f"{self.name} not healthy after {timeout_seconds}s: {self.logs()[-2000:]}")
            time.sleep(0.5)
        return time.monotonic() - started

    def logs(self) -> str:
        result = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True, check=False)
        return result.stdout + result.stderr

    def run_command(self, resource_name: str, key: str = "create") -> subprocess.CompletedProcess[str]:
        """Runs a registered local.Command exactly as the provider does: its text under `/bin/sh -c`,
        its `stdin` fed to create and delete alike."""
        inputs = self.run.by_name(resource_name).inputs
        return subprocess.run(
            ["/bin/sh", "-c", inputs[key]], input=inputs.get("stdin"), capture_output=True, text=True, check=False
        )
