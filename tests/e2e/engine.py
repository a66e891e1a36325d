"""The real Pulumi engine, for tests that run the `pulumi` CLI the way its users do.

An installed `pulumi` on PATH is used as it is: it downloads the plugins the Python SDKs ask for
into its own PULUMI_HOME. Without one, scripts/dev/build-pulumi-engine.sh builds the CLI, the Python
language host and the command and docker providers offline (cached by version) and installs the
providers as plugins. Each test run then gets its own PULUMI_HOME whose plugins/ is that build's,
and the engine is told never to download a plugin, so an SDK asking for a version the build does
not have fails at once instead of trying the network.

Every run uses a file backend in a folder the test owns (PULUMI_BACKEND_URL, so no `pulumi login`
touches the user's credentials) and works in a copy of the program: `pulumi stack init` writes the
passphrase salt into Pulumi.<stack>.yaml, which must not change in the checkout.
"""

import functools
import importlib.metadata
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ollama_gpu.pins import read_pins
from tests.integration.harness import REPO_ROOT, require, run_dev_script

# Protects only the throwaway state the tests create.
TEST_PASSPHRASE = "ollama-gpu-test-passphrase"
# The plugins a built engine carries, by Python SDK distribution and pins.env key.
BUILT_PLUGINS = {"pulumi_command": ("command", "PULUMI_COMMAND_VERSION"),
                 "pulumi_docker": ("docker", "PULUMI_DOCKER_VERSION")}


@dataclass(frozen=True)
class Engine:
    pulumi: Path
    # The built engine's installed plugins; None for an installed CLI, which manages its own.
    plugins: Optional[Path]

    def env(self, state_dir: Path, home: Path) -> dict[str, str]:
        """The environment for `pulumi` subprocesses: state under `state_dir`, and for a built
        engine a PULUMI_HOME at `home` (login state, workspaces) sharing the built plugins."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PULUMI_")}
        env |= {
            "PATH": f"{self.pulumi.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PULUMI_BACKEND_URL": state_dir.resolve().as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": TEST_PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
        }
        if self.plugins is None:
            if "PULUMI_HOME" in os.environ:
                env["PULUMI_HOME"] = os.environ["PULUMI_HOME"]
            return env
        home.mkdir(parents=True, exist_ok=True)
        if not (home / "plugins").exists():
            (home / "plugins").symlink_to(self.plugins, target_is_directory=True)
        env["PULUMI_HOME"] = str(home)
        env["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
        return env


@functools.cache
def find_engine() -> Engine:
    """An installed `pulumi`, else the build (built on first use, seconds when cached). Skips when
    neither can be had; under CI=true that is a failure."""
    installed = shutil.which("pulumi")
    if installed:
        return Engine(Path(installed), None)
    product = _built_engine()
    require(product is not None, "no pulumi on PATH, and scripts/dev/build-pulumi-engine.sh failed (its log is above)")
    engine = Engine(product / "bin" / "pulumi", product / "home" / "plugins")
    _require_sdks_match(engine.plugins)
    return engine


def _built_engine() -> Optional[Path]:
    try:
        return Path(run_dev_script("build-pulumi-engine.sh"))
    except subprocess.CalledProcessError:
        return None


def _require_sdks_match(plugins: Path) -> None:
    """The SDK in this virtualenv asks the engine for the plugin version equal to its own."""
    pins = read_pins()
    for distribution, (plugin, pin) in BUILT_PLUGINS.items():
        sdk_version = importlib.metadata.version(distribution)
        require(
            (plugins / f"resource-{plugin}-v{sdk_version}").is_dir(),
            f"{distribution} {sdk_version} in this virtualenv asks for plugin {plugin} v{sdk_version}, "
            f"but the built engine has v{pins[pin]} (pins.env): run scripts/dev/ensure-venv.sh",
        )


def program_copy(destination: Path) -> Path:
    """The program's files (tracked or not, minus git-ignored ones) copied to `destination`, with
    the checkout's .venv linked in, so the engine runs the code under test without writing to it."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file() and not source.is_symlink():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to(REPO_ROOT / ".venv", target_is_directory=True)
    return destination


def run_pulumi(
    args: list[str], cwd: Path, env: dict[str, str], check: bool = True, timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`pulumi ARGS`, non-interactive, output captured; a failure shows the whole output."""
    result = subprocess.run(
        ["pulumi", *args, "--non-interactive"], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"pulumi {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result
