"""The README's config table is generated from the settings models; a stale one fails here."""

from pathlib import Path

from ollama_gpu.config_doc import config_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_config_table_is_current():
    assert config_table() in README.read_text(), "run: .venv/bin/python -m ollama_gpu.config_doc --write"

