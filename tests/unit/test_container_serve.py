"""container/serve.sh, the container's command: after every start of the server (first deploy,
health-check restart, VM reboot) it loads the alias, so no request pays the load; it never pulls;
and the container lives and dies with the server. Run as the program's entrypoint runs it, with a
stand-in `ollama` binary that logs what it is asked."""

import os
import queue
import subprocess
import threading
from pathlib import Path

import pytest

from ollama_gpu.shell import render_script

ALIAS = "qwen3-30b-a3b-2507-q8:ctx32k"
WAIT_SECONDS = 60

# serve: runs until $STAND_IN/stop exists, then exits with $STAND_IN/exit-code (default 0).
# list: answers once $STAND_IN/ready exists. show: knows the models listed in $STAND_IN/models.
FAKE_OLLAMA = """#!/bin/sh
echo "$*" >>"$STAND_IN/calls"
case $1 in
  serve)
    while [ ! -e "$STAND_IN/stop" ]; do sleep 0.05; done
    exit "$(cat "$STAND_IN/exit-code" 2>/dev/null || echo 0)" ;;
  list) [ -e "$STAND_IN/ready" ] ;;
  show) grep -qx "$2" "$STAND_IN/models" 2>/dev/null ;;
  run) exit 0 ;;
  *) exit 2 ;;
esac
"""


class Container:
    def __init__(self, stand_in: Path, process: subprocess.Popen):
        self.stand_in = stand_in
        self.process = process
        self.output: list[str] = []
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self._lines.put(line) for line in process.stdout], daemon=True).start()

    def wait_for_line(self, text: str) -> None:
        """Reads the container's log until a line holds `text` (the stand-in server never stops by itself)."""
        while True:
            try:
                line = self._lines.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                pytest.fail(f"no line with {text!r} in:\n{''.join(self.output)}")
            self.output.append(line)
            if text in line:
                return

    def stop_server(self, exit_code: int = 0) -> int:
        (self.stand_in / "exit-code").write_text(str(exit_code))
        (self.stand_in / "stop").touch()
        return self.process.wait(timeout=WAIT_SECONDS)

    def calls(self) -> list[str]:
        return (self.stand_in / "calls").read_text().splitlines()


@pytest.fixture
def start_container(tmp_path):
    processes = []

    def start(ready: bool = True, models: tuple[str, ...] = (ALIAS,), ready_timeout: int = 30) -> Container:
        stand_in = tmp_path / "stand-in"
        bin_dir = tmp_path / "bin"
        stand_in.mkdir()
        bin_dir.mkdir()
        (bin_dir / "ollama").write_text(FAKE_OLLAMA)
        (bin_dir / "ollama").chmod(0o755)
        (stand_in / "models").write_text("".join(f"{m}\n" for m in models))
        if ready:
            (stand_in / "ready").touch()
        command = render_script("container/serve.sh", {"WARM_MODEL": ALIAS, "READY_TIMEOUT_SECONDS": ready_timeout})
        process = subprocess.Popen(
            ["/bin/bash", "-c", command, "serve"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STAND_IN": str(stand_in)},
        )
        processes.append((stand_in, process))
        return Container(stand_in, process)

    yield start
    for stand_in, process in processes:
        (stand_in / "stop").touch()
        try:
            process.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_every_start_loads_the_alias_once_the_server_answers(start_container):
    container = start_container()
    container.wait_for_line(f"ollama-gpu: loaded {ALIAS}")
    calls = container.calls()
    # The server and the loader start side by side; the loader only runs the alias it found.
    assert "serve" in calls
    assert calls.index(f"show {ALIAS}") < calls.index(f"run {ALIAS} ")
    assert container.stop_server() == 0


def test_a_missing_alias_is_not_run_so_nothing_is_pulled(start_container):
    """`ollama run` pulls a model it does not have: on a first deploy the alias does not exist yet."""
    container = start_container(models=())
    container.wait_for_line(f"{ALIAS} does not exist yet; not loading it")
    assert not any(call.startswith("run") for call in container.calls())
    container.stop_server()


def test_a_server_that_never_answers_is_left_to_the_health_check(start_container):
    container = start_container(ready=False, ready_timeout=1)
    container.wait_for_line(f"server not answering after 1s; not loading {ALIAS}")
    assert not any(call.startswith(("show", "run")) for call in container.calls())
    container.stop_server()


@pytest.mark.parametrize("exit_code", [0, 3])
def test_the_container_exits_with_the_server(start_container, exit_code):
    """The restart policy acts on the container's exit: the server's end must be the container's."""
    container = start_container()
    container.wait_for_line(f"ollama-gpu: loaded {ALIAS}")
    assert container.stop_server(exit_code) == exit_code
