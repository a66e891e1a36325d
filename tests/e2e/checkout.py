"""Copies of the program as a user has them: a clone's files (tracked and new, nothing ignored, so
no .cache/ left by earlier runs) in a folder of their own, with the `pulumi` CLI run inside."""

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.integration.harness import REPO_ROOT

PULUMI_COMMAND_SECONDS = 1200


def _clone_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return [name for name in listed.split("\0") if name and (REPO_ROOT / name).is_file()]


@dataclass(frozen=True)
class Checkout:
    path: Path
    env: dict[str, str]

    def pulumi(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["pulumi", *args], cwd=self.path, env=self.env, input=stdin, capture_output=True, text=True,
            timeout=PULUMI_COMMAND_SECONDS, check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def output(self, name: str, stack: str) -> object:
        return json.loads(self.pulumi("stack", "output", name, "--json", "-s", stack).stdout)


def fresh_checkout(destination: Path, env: dict[str, str]) -> Checkout:
    """The program's files as a fresh clone has them; its virtualenv is the project's (Pulumi.yaml
    names .venv), linked rather than rebuilt."""
    destination.mkdir(parents=True)
    for name in _clone_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, target)
    os.symlink(REPO_ROOT / ".venv", destination / ".venv", target_is_directory=True)
    return Checkout(destination, env)
