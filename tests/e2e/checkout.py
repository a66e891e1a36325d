"""A user's checkout of the program: a clone's files (tests/e2e/engine.py's program_copy, so no
.cache/ left by earlier runs) with the `pulumi` CLI run inside it."""

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.engine import program_copy, run_pulumi

PULUMI_COMMAND_SECONDS = 1200


@dataclass(frozen=True)
class Checkout:
    path: Path
    env: dict[str, str]

    def pulumi(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_pulumi(list(args), self.path, self.env, check=check, timeout=PULUMI_COMMAND_SECONDS, stdin=stdin)

    def output(self, name: str, stack: str) -> object:
        return json.loads(self.pulumi("stack", "output", name, "--json", "-s", stack).stdout)


def fresh_checkout(destination: Path, env: dict[str, str]) -> Checkout:
    return Checkout(program_copy(destination), env)
