"""Go's time.ParseDuration, which Ollama (OLLAMA_KEEP_ALIVE, OLLAMA_LOAD_TIMEOUT) and Pulumi
(customTimeouts) parse durations with. A value Go refuses is one Ollama silently replaces with its
default, so the config is checked against the same grammar, range included."""

import re
from fractions import Fraction
from typing import Optional

_NANOSECONDS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_ELEMENT = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)", re.ASCII)
# time.Duration is an int64 count of nanoseconds: about 2562047 hours.
LONGEST_NANOSECONDS = 2**63 - 1


def parse_nanoseconds(text: str) -> Optional[int]:
    """The duration in nanoseconds, or None where Go's ParseDuration returns an error."""
    sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text[1:] if text[:1] == "+" else text)
    if body == "0":
        return 0
    if not body:
        return None
    total = Fraction(0)
    position = 0
    while position < len(body):
        match = _ELEMENT.match(body, position)
        if match is None or not (match[1] or match[2]):
            return None
        whole, fraction, unit = match[1] or "0", match[2] or "", match[3]
        total += (int(whole) + Fraction(int(fraction or "0"), 10 ** len(fraction))) * _NANOSECONDS[unit]
        position = match.end()
    nanoseconds = int(total)
    if nanoseconds > LONGEST_NANOSECONDS + (1 if sign < 0 else 0):
        return None
    return sign * nanoseconds


def seconds_text(seconds: int) -> str:
    """Whole seconds as Go's time.Duration.String writes them ("45s", "5m0s", "1h0m0s"): Docker
    reads a health check's durations back in this form, so any other spelling of the same time
    would show as a change in every `pulumi preview`."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
