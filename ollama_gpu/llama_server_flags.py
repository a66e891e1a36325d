"""Which command-line flags the pinned llama-server build accepts, read from its own `--help`.

llama.cpp adds, renames and removes flags from one build to the next, so the program checks every
flag it renders against the pinned build's help text, captured by scripts/dev/capture-llama-server-help.sh
into ollama_gpu/llama_server_help/b<LLAMA_CPP_BUILD>.txt (an integration test keeps that file equal
to what the built binary prints).

The format is common_arg::to_string() in common/arg.cpp of that build: sections headed
"----- NAME -----"; per option, its names joined by ", " (the first padded to 7 characters) and
an optional value hint, then its help from column 40, or from the next line when the names are
longer than 37 characters; every help line after the first is indented 40 spaces, and a flag read
from the environment ends its help with a line "(env: LLAMA_ARG_...)". Anything else is an error
here, so a changed format fails loudly instead of yielding a short list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ollama_gpu.pins import read_pins

HELP_DIR = Path(__file__).resolve().parent / "llama_server_help"
HELP_COLUMN = 40
_SECTION = re.compile(r"----- (?P<name>[a-z -]+) -----")
_NAME = re.compile(r"--?[A-Za-z0-9][A-Za-z0-9._-]*")
_ENV = re.compile(r"\(env: (?P<name>LLAMA_ARG_[A-Z0-9_]+)\)")


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]  # as printed: "-c", "--ctx-size"; a negated form ("--no-mmap") too
    value_hint: str | None  # "N", "[on|off|auto]", "FNAME"; None for a switch
    env: str | None  # LLAMA_ARG_*; a flag with a --no- form also reads LLAMA_ARG_NO_*
    section: str  # "common params", "sampling params", "speculative params", "example-specific params"
    help: str  # the help text, lines joined by spaces, without the env note

    @property
    def values_taken(self) -> int:
        """How many arguments follow the flag: none for a switch, two for a hint like "START END"."""
        return 0 if self.value_hint is None else len(self.value_hint.split(" "))


class FlagTable:
    """The flags of one build, looked up by any of their names."""

    def __init__(self, flags: tuple[Flag, ...]):
        self.flags = flags
        self._by_name: dict[str, Flag] = {}
        for flag in flags:
            for name in flag.names:
                if name in self._by_name:
                    raise ValueError(f"llama-server help lists {name} twice")
                self._by_name[name] = flag

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Flag:
        return self._by_name[name]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    @property
    def env_names(self) -> frozenset[str]:
        return frozenset(flag.env for flag in self.flags if flag.env)

    def unknown_options(self, args: Sequence[str]) -> list[str]:
        """The options in a llama-server argument list (what follows the program name) that this
        build does not have, read as common_params_parse_ex reads them: every argument that is not
        a value must be an option, each option takes the values its hint shows, and "--" options
        may be spelled with underscores. The server exits with "invalid argument" on any of them."""
        unknown = []
        index = 0
        while index < len(args):
            arg = args[index]
            name = arg.replace("_", "-") if arg.startswith("--") else arg
            if name in self._by_name:
                index += 1 + self._by_name[name].values_taken
            else:
                unknown.append(arg)
                index += 1
        return unknown


def _split_names(head: str, line_number: int) -> tuple[tuple[str, ...], str | None]:
    """"-ngl, --gpu-layers, --n-gpu-layers N" -> (("-ngl", "--gpu-layers", "--n-gpu-layers"), "N")."""
    parts = [part.strip() for part in head.split(", ")]
    *leading, last = parts
    last_name, _, hint = last.partition(" ")
    names = (*leading, last_name)
    for name in names:
        if not _NAME.fullmatch(name):
            raise ValueError(f"line {line_number}: {name!r} is not a flag name (in {head!r})")
    return names, hint.strip() or None


def _finish(head: str, head_line: int, help_lines: list[str], section: str) -> Flag:
    names, hint = _split_names(head, head_line)
    text = " ".join(line.strip() for line in help_lines)
    envs = _ENV.findall(text)
    if len(envs) > 1:
        raise ValueError(f"line {head_line}: {names[-1]} names {len(envs)} environment variables")
    return Flag(names, hint, envs[0] if envs else None, section, _ENV.sub("", text).strip())


def parse_help(text: str) -> tuple[Flag, ...]:
    """The flags `llama-server --help` prints, in its order."""
    flags: list[Flag] = []
    section: str | None = None
    head: str | None = None
    head_line = 0
    help_lines: list[str] = []
    indent = " " * HELP_COLUMN

    def close() -> None:
        nonlocal head
        if head is not None:
            assert section is not None
            flags.append(_finish(head, head_line, help_lines, section))
            head = None

    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if heading := _SECTION.fullmatch(line):
            close()
            section = heading["name"]
        elif line.startswith(indent):
            if head is None:
                raise ValueError(f"line {number}: help text without a flag before it")
            help_lines.append(line)
        elif line.startswith("-"):
            if section is None:
                raise ValueError(f"line {number}: a flag before the first section heading")
            close()
            head_line = number
            # Names up to 37 characters are padded to column 40 and the help follows on the line.
            if len(line) > HELP_COLUMN and line[HELP_COLUMN - 3 : HELP_COLUMN] == "   ":
                head, help_lines = line[:HELP_COLUMN].rstrip(), [line[HELP_COLUMN:]]
            else:
                head, help_lines = line.rstrip(), []
        else:
            raise ValueError(f"line {number}: neither a section, a flag nor its help: {line!r}")
    close()
    if not flags:
        raise ValueError("no flags found in the llama-server help text")
    return tuple(flags)


def help_path(build: str) -> Path:
    return HELP_DIR / f"b{build}.txt"


def pinned_build() -> str:
    return read_pins()["LLAMA_CPP_BUILD"]


def pinned_flags() -> FlagTable:
    """The flags of the llama-server build pinned in pins.env (LLAMA_CPP_BUILD)."""
    path = help_path(pinned_build())
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run scripts/dev/capture-llama-server-help.sh after changing the pin")
    return FlagTable(parse_help(path.read_text()))
