"""Reads Pulumi.<stack>.yaml for the offline tools as strictly as the Pulumi CLI reads it, so that
`make plan` never accepts a file that `pulumi up` would read differently or refuse.

Pulumi parses stack files with go-yaml v3, which follows YAML 1.2: `yes`, `on` and `1:20` are
strings there, not a boolean and a sexagesimal number as in PyYAML's YAML 1.1, and there are no
timestamp or set types. The loader resolves plain scalars by the YAML 1.2 core schema and refuses
what has no place in a stack file: duplicate keys (YAML forbids them; PyYAML keeps the last),
anchors and aliases (one short file can expand to gigabytes), explicit tags (`!!python/...`),
non-string keys, several documents, and nesting or size no stack file needs.
"""

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import MappingNode, ScalarNode

from ollama_gpu.errors import ConfigError

LARGEST_FILE_BYTES = 1024 * 1024
DEEPEST_NESTING = 32

_STR = "tag:yaml.org,2002:str"


class _Refused(yaml.MarkedYAMLError):
    def __init__(self, problem: str, mark: Any):
        super().__init__(problem=problem, problem_mark=mark)


class _StrictLoader(yaml.SafeLoader):
    yaml_implicit_resolvers: dict = {}

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused("anchors and aliases (& and *) are not allowed in a stack file", event.start_mark)
        if isinstance(event, (ScalarEvent, CollectionStartEvent)) and event.tag is not None:
            raise _Refused(f"the explicit tag {event.tag!r} is not allowed in a stack file", event.start_mark)
        self._depth += 1
        if self._depth > DEEPEST_NESTING:
            raise _Refused(f"values nest deeper than {DEEPEST_NESTING} levels", event.start_mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict:
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                shown = key_node.value if isinstance(key_node, ScalarNode) else "a list or mapping"
                raise _Refused(f"the key {shown!r} is not a string; quote it", key_node.start_mark)
            line = key_node.start_mark.line + 1
            if key_node.value in first_line:
                raise _Refused(
                    f"the key {key_node.value!r} appears twice (first on line {first_line[key_node.value]}); "
                    "Pulumi refuses the file", key_node.start_mark,
                )
            first_line[key_node.value] = line
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), as go-yaml v3 resolves.
for _tag, _pattern, _first in [
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("tag:yaml.org,2002:int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    ("tag:yaml.org,2002:float",
     r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.nan|\.NaN|\.NAN",
     list("-+.0123456789")),
]:
    _StrictLoader.add_implicit_resolver(_tag, re.compile(rf"^(?:{_pattern})$"), _first)


def _construct_int(loader: _StrictLoader, node: ScalarNode) -> int:
    text = node.value
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_float(loader: _StrictLoader, node: ScalarNode) -> float:
    text = node.value.lower()
    if text.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    return float("nan") if text == ".nan" else float(text)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def load_stack_document(path: Path, stack: str) -> dict[str, Any]:
    """The stack file as a mapping, or ConfigError naming the stack, the place and the fix."""

    def refuse(where: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"stack '{stack}': {path.name}{where}: {problem}. Fix: {fix}.")

    raw = path.read_bytes()
    if len(raw) > LARGEST_FILE_BYTES:
        raise refuse("", f"is {len(raw)} bytes; a stack file is a few kilobytes", "remove what is not stack configuration")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise refuse(f" byte {error.start}", "is not UTF-8 text", "save the file as UTF-8") from None
    loader = None
    try:
        loader = _StrictLoader(text)
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = error.problem or error.context or "is not valid YAML"
        if problem.startswith("but found another document"):
            problem = "a second YAML document starts here; a stack file is one document"
        fix = "rewrite it with `pulumi config set`" if isinstance(error, _Refused) else \
            "correct the YAML there (indent with spaces, quote values holding ': ' or '#')"
        raise refuse(where, problem, fix) from None
    except yaml.reader.ReaderError as error:
        # Characters no YAML stream may hold: NUL and other control characters.
        raise refuse(f" character {error.position + 1}", f"holds the control character U+{error.character:04X}",
                     "remove it; write such a character as an escape in a double-quoted string if it is meant") from None
    except ValueError:
        # int() refuses more than 4300 digits; no config value needs a tenth of that.
        raise refuse("", "holds a number too long to read", "write a number of a sensible size") from None
    finally:
        if loader is not None:
            loader.dispose()
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise refuse("", f"is a YAML {type(document).__name__}, not a mapping with a `config:` key",
                     f"start from `config:` with keys like `ollama-gpu:profile: a10`")
    return document
