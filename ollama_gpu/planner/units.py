"""Byte sizes and rates as people write them, and as Ollama prints them.

Ollama's memory log lines print sizes with Go's ``format.HumanBytes2`` (binary units, one decimal),
so the planner prints the same way: a figure from the planner can be compared with the server log
character for character.
"""

from __future__ import annotations

import re

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB

_UNIT_FACTORS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": KIB,
    "mib": MIB,
    "gib": GIB,
    "tib": TIB,
}

_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
_RATE_SUFFIX = re.compile(r"\s*(/s|ps)\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Parses "22.5GiB", "512MiB", "24GB", "1073741824" into bytes.

    Decimal prefixes (KB, MB, GB, TB) are powers of 1000 and binary ones (KiB ... TiB) powers of
    1024, because VRAM is sold in GB but Ollama reports it in GiB and the two differ by 7%.
    """
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"size must not be negative: {text}")
        return text
    match = _SIZE_PATTERN.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 22.5GiB, 512MiB, 24GB, 1073741824)")
    number, unit = match.groups()
    return round(float(number) * _UNIT_FACTORS[(unit or "").lower()])


def parse_rate(text: str | float) -> float:
    """Parses a bandwidth such as "600GB/s", "900 GB/s" or "100e9" into bytes per second."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        without_suffix = _RATE_SUFFIX.sub("", text)
        try:
            value = float(without_suffix)
        except ValueError:
            try:
                value = float(parse_size(without_suffix))
            except ValueError:
                raise ValueError(f"not a rate: {text!r} (examples: 600GB/s, 900GB/s)") from None
    if value <= 0:
        raise ValueError(f"rate must be positive: {text!r}")
    return value


def format_ollama(size: int) -> str:
    """Formats bytes exactly like Ollama's ``format.HumanBytes2`` (format/bytes.go)."""
    if size >= GIB:
        return f"{size / GIB:.1f} GiB"
    if size >= MIB:
        return f"{size / MIB:.1f} MiB"
    if size >= KIB:
        return f"{size / KIB:.1f} KiB"
    return f"{size} B"


def format_gb(size: int) -> str:
    """Formats bytes in decimal GB with two decimals, the unit model files and RAM are quoted in."""
    return f"{size / 1000**3:.2f} GB"
