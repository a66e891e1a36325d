"""A quiet stop when the engine ends the program.

When a step fails, the engine cancels the program by sending its Python process SIGINT (the
language host's Cancel, then again when it kills the plugin's process group). Python turns that
into a KeyboardInterrupt in the middle of the SDK's own shutdown ("Resource monitor has
terminated"), and the engine prints the whole chained traceback after the step's error — some 90
lines that bury the one reason that matters. The failed step has already said why, so the program
leaves at once, with the language host's code for "the error was already reported".
"""

import os
import signal
import sys

ALREADY_REPORTED = 32


def exit_quietly_when_stopped() -> None:
    signal.signal(signal.SIGINT, _exit_quietly)


def _exit_quietly(signum: int, frame: object) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit: a normal exit would run the SDK's asyncio teardown, which prints its own errors.
    os._exit(ALREADY_REPORTED)
