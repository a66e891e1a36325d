#!/usr/bin/python3
"""STAND-IN for NVIDIA's nvidia-ctk, installed as /usr/bin/nvidia-ctk by the test harness's
stand-in nvidia-container-toolkit package. It has no GPU support at all.

It models the invocations that the host-prep scripts make, with the real tool's effects on disk
and a similar log on stderr:
  nvidia-ctk --version
  nvidia-ctk runtime configure --runtime=docker [--config=/etc/docker/daemon.json]
  nvidia-ctk config --set KEY[=VALUE] ... [--in-place] [--config=/etc/nvidia-container-runtime/config.toml]
Anything else is a usage error, so a script that relies on more than this fails visibly.
"""

import argparse
import json
import os
import re
import sys
import tempfile
import tomllib
from pathlib import Path

# The package build replaces the placeholder with the package's upstream version.
TOOLKIT_VERSION = "@TOOLKIT_VERSION@"
DOCKER_DAEMON_CONFIG = Path("/etc/docker/daemon.json")
TOOLKIT_CONFIG = Path("/etc/nvidia-container-runtime/config.toml")
NVIDIA_RUNTIME = {"args": [], "path": "nvidia-container-runtime"}
BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
INTEGER = re.compile(r"[+-]?[0-9]+")


class StandinError(Exception):
    pass


def log(level: str, message: str) -> None:
    """Logs the way the real tool does (logrus text format, on stderr)."""
    print(f"{level}[0000] {message}", file=sys.stderr)


def write_file(path: Path, text: str) -> None:
    """Replaces the file in one step, so a reader never sees it half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as new:
        new.write(text)
    os.chmod(new.name, 0o644)
    os.replace(new.name, path)


def configure_docker_runtime(config_path: Path) -> None:
    if config_path.exists():
        log("INFO", f"Loading config from {config_path}")
        text = config_path.read_text()
        try:
            config = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as error:
            raise StandinError(f"unable to load config: {error}") from error
        if not isinstance(config, dict):
            raise StandinError(f"unable to load config: {config_path} does not hold a JSON object")
    else:
        log("INFO", "Config file does not exist; using empty config")
        config = {}
    config.setdefault("runtimes", {})["nvidia"] = dict(NVIDIA_RUNTIME)
    # Sorted keys and four-space indents: the same bytes however often it runs.
    write_file(config_path, json.dumps(config, indent=4, sort_keys=True))
    log("INFO", f"Wrote updated config to {config_path}")
    log("INFO", "It is recommended that docker daemon be restarted.")


def setting_value(text: str, current: object) -> object:
    """Reads VALUE as the type the key already has; a new key gets the type its text looks like."""
    if isinstance(current, list):
        return [item for item in text.split(",") if item]
    if isinstance(current, str):
        return text
    if text in ("true", "false"):
        return text == "true"
    if INTEGER.fullmatch(text):
        return int(text)
    return text


def apply_setting(config: dict, assignment: str) -> None:
    """KEY=VALUE sets a dotted key, KEY alone means KEY=true and KEY= removes the key, as in the real tool."""
    key, has_value, text = assignment.partition("=")
    *table_names, name = key.split(".")
    table = config
    for table_name in table_names:
        table = table.setdefault(table_name, {})
        if not isinstance(table, dict):
            raise StandinError(f"invalid --set {assignment}: {table_name} is not a table")
    if has_value and not text:
        table.pop(name, None)
    else:
        table[name] = setting_value(text, table.get(name)) if has_value else True


def toml_key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else json.dumps(key)


def toml_value(value: object) -> str:
    # bool first: it is a subclass of int. JSON string escapes are all valid TOML escapes.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)  # also right for inf, -inf and nan
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise StandinError(f"cannot write {type(value).__name__} values")


def toml_lines(table: dict, path: tuple[str, ...] = ()) -> list[str]:
    values = {key: value for key, value in table.items() if not isinstance(value, dict)}
    tables = {key: value for key, value in table.items() if isinstance(value, dict)}
    lines = []
    if path and (values or not tables):
        lines += ["", "[" + ".".join(toml_key(name) for name in path) + "]"]
    lines += [f"{toml_key(key)} = {toml_value(value)}" for key, value in values.items()]
    for key, subtable in tables.items():
        lines += toml_lines(subtable, (*path, key))
    return lines


def toml_document(config: dict) -> str:
    return "\n".join(toml_lines(config)).lstrip("\n") + "\n"


def set_config(config_path: Path, assignments: list[str], in_place: bool) -> None:
    try:
        config = tomllib.loads(config_path.read_text()) if config_path.exists() else {}
    except tomllib.TOMLDecodeError as error:
        raise StandinError(f"unable to load config: {error}") from error
    for assignment in assignments:
        apply_setting(config, assignment)
    document = toml_document(config)
    if in_place:
        write_file(config_path, document)
    else:
        sys.stdout.write(document)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nvidia-ctk",
        description="STAND-IN for NVIDIA's nvidia-ctk (ollama-gpu test harness).",
        # keeps the two lines of the version text apart
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", "-v", action="version",
        version=f"NVIDIA Container Toolkit CLI version {TOOLKIT_VERSION}\ncommit: standin",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    runtime_commands = commands.add_parser("runtime").add_subparsers(dest="runtime_command", required=True)
    configure = runtime_commands.add_parser("configure")
    configure.add_argument("--runtime", choices=["docker"], default="docker")
    configure.add_argument("--config", type=Path, default=DOCKER_DAEMON_CONFIG)
    configure.set_defaults(run=lambda args: configure_docker_runtime(args.config))

    config = commands.add_parser("config")
    config.add_argument("--config", "--config-file", "-c", dest="path", type=Path, default=TOOLKIT_CONFIG)
    config.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY[=VALUE]")
    config.add_argument("--in-place", "-i", action="store_true")
    config.set_defaults(run=lambda args: set_config(args.path, args.assignments, args.in_place))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = argument_parser().parse_args(argv)
    try:
        args.run(args)
    except (StandinError, OSError) as error:
        log("ERRO", str(error))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
