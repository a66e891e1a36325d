"""Fills a config template (ollama_gpu/templates/) whose parameters are double-braced upper-case
names: every declared name must be given and nothing else, so a renamed or forgotten parameter is
an error, not a file with a hole. The callers check each value against its grammar first."""

import re
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"
_PLACEHOLDER = re.compile(r"\{\{([A-Z_]+)\}\}")


def fill_template(name: str, params: dict[str, str]) -> str:
    text = (TEMPLATES / name).read_text()
    declared = set(_PLACEHOLDER.findall(text))
    if declared != set(params):
        raise ValueError(f"the template {name} declares {sorted(declared)} but was given {sorted(params)}")
    return _PLACEHOLDER.sub(lambda match: params[match.group(1)], text)
