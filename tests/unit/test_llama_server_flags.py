"""The llama-server flag table: the parser reads common/arg.cpp's help layout exactly (names, value
hints, env names, long heads whose help starts on the next line) and rejects anything else; the
committed capture of the pinned build parses completely and has the flags issue 14 relies on.
The capture itself is kept equal to the built binary's --help by tests/integration/test_llama_server_native.py."""

import pytest

from ollama_gpu.llama_server_flags import FlagTable, help_path, parse_help, pinned_build, pinned_flags

PAD = " " * 40

SAMPLE = (
    "----- common params -----\n\n"
    "-h,    --help, --usage                  print usage and exit\n"
    "-c,    --ctx-size N                     size of the prompt context (default: 0, 0 = loaded from model)\n"
    f"{PAD}(env: LLAMA_ARG_CTX_SIZE)\n"
    "--mmap, --no-mmap                       whether to memory-map model\n"
    f"{PAD}(env: LLAMA_ARG_MMAP)\n"
    "-ot,   --override-tensor <tensor name pattern>=<buffer type>,...\n"
    f"{PAD}override tensor buffer type\n"
    "\n\n----- example-specific params -----\n\n"
    "-a,    --alias STRING                   set alias for model name (to be used by REST API)\n"
    f"{PAD}\n"
    f"{PAD}(env: LLAMA_ARG_ALIAS)\n"
)


def test_reads_names_hints_envs_and_sections():
    flags = FlagTable(parse_help(SAMPLE))
    assert flags["--usage"].names == ("-h", "--help", "--usage")
    assert flags["--usage"].value_hint is None and flags["--usage"].env is None
    ctx = flags["-c"]
    assert (ctx.names, ctx.value_hint, ctx.env, ctx.section) == (
        ("-c", "--ctx-size"), "N", "LLAMA_ARG_CTX_SIZE", "common params"
    )
    assert ctx.help == "size of the prompt context (default: 0, 0 = loaded from model)"
    assert flags["--no-mmap"] is flags["--mmap"]
    assert flags["--alias"].section == "example-specific params"
    assert flags.env_names == {"LLAMA_ARG_CTX_SIZE", "LLAMA_ARG_MMAP", "LLAMA_ARG_ALIAS"}


def test_a_long_head_has_its_help_on_the_next_line():
    override = FlagTable(parse_help(SAMPLE))["--override-tensor"]
    assert override.names == ("-ot", "--override-tensor")
    assert override.value_hint == "<tensor name pattern>=<buffer type>,..."
    assert override.help == "override tensor buffer type"


@pytest.mark.parametrize(
    "text",
    [
        "-c,    --ctx-size N                     size\n",  # no section heading before it
        "----- common params -----\n" + PAD + "help without a flag\n",
        "----- common params -----\nusage: llama-server [options]\n",
        "----- common params -----\n-c,    ctx-size N                       not a flag name\n",
        "----- common params -----\n",
        "----- common params -----\n-c N                                     a\n"
        "--ctx-size N                             b\n-c N                                     c\n",
    ],
)
def test_rejects_what_is_not_the_help_layout(text: str):
    with pytest.raises(ValueError):
        FlagTable(parse_help(text))


def test_the_pinned_capture_parses_every_flag_line():
    text = help_path(pinned_build()).read_text()
    flags = pinned_flags()
    heads = [line for line in text.splitlines() if line.startswith("-") and not line.startswith("-----")]
    assert len(flags.flags) == len(heads)
    assert all(name.startswith("-") for name in flags.names)


@pytest.mark.parametrize(
    "names, env",
    [
        (("-c", "--ctx-size"), "LLAMA_ARG_CTX_SIZE"),
        (("-np", "--parallel"), "LLAMA_ARG_N_PARALLEL"),
        (("-fa", "--flash-attn"), "LLAMA_ARG_FLASH_ATTN"),
        (("-ctk", "--cache-type-k"), "LLAMA_ARG_CACHE_TYPE_K"),
        (("-ctv", "--cache-type-v"), "LLAMA_ARG_CACHE_TYPE_V"),
        (("-ngl", "--n-gpu-layers"), "LLAMA_ARG_N_GPU_LAYERS"),
        (("-ncmoe", "--n-cpu-moe"), "LLAMA_ARG_N_CPU_MOE"),
        (("-fit", "--fit"), "LLAMA_ARG_FIT"),
        (("-fitt", "--fit-target"), "LLAMA_ARG_FIT_TARGET"),
        (("-a", "--alias"), "LLAMA_ARG_ALIAS"),
        (("--host",), "LLAMA_ARG_HOST"),
        (("--port",), "LLAMA_ARG_PORT"),
    ],
)
def test_the_pinned_build_has_the_flags_the_engine_uses(names: tuple[str, ...], env: str):
    flags = pinned_flags()
    found = {flags[name] for name in names}
    assert len(found) == 1, f"{names} are not one flag"
    assert found.pop().env == env


def test_unknown_options_reads_values_as_the_server_does():
    flags = FlagTable(parse_help(SAMPLE))
    # "-c" takes "-1" as its value; --no-mmap and -h take none; "--ctx_size" is "--ctx-size".
    assert flags.unknown_options(["-c", "-1", "--no-mmap", "--ctx_size", "8", "-h"]) == []
    assert flags.unknown_options(["--alias", "--mmap", "--bogus", "-x", "--fit", "on"]) == ["--bogus", "-x", "--fit", "on"]


def test_a_two_part_hint_takes_two_values():
    text = "----- common params -----\n--range START END                       two values\n"
    flags = FlagTable(parse_help(text))
    assert flags["--range"].values_taken == 2
    assert flags.unknown_options(["--range", "1", "2", "--range", "3"]) == []
