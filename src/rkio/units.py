"""Parsing of human-written sizes ("6GiB", "512M") and durations ("5m", "90s", "-1")."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)?")
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

GiB = 1 << 30
MiB = 1 << 20


def parse_size(text: str | int) -> int:
    """Bytes from ``6GiB``, ``6G``, ``512MB``, ``1048576``. Units are binary (1K = 1024) as RAM sizes are.
    Anything else (a float, ``true``, a list from a TOML file) is a ``ValueError``."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _SIZE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 6GiB, 512M, 1073741824)")
    number, unit, _, _ = match.groups()
    return int(float(number) * (1024 ** _POWERS[unit.lower()]))


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``5m``, ``1h30m``, ``90``, ``250ms``. Negative means forever (Ollama's keep_alive)."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str):
        raise ValueError(f"not a duration: {text!r} (examples: 5m, 90s, 1h, -1)")
    cleaned = text.strip().lower()
    if not cleaned:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    for match in _DURATION.finditer(cleaned):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(cleaned):
        raise ValueError(f"not a duration: {text!r} (examples: 5m, 90s, 1h, -1)")
    return total


def format_size(n: int) -> str:
    """``1.5 GiB`` style, for error messages and status output."""
    for unit, power in (("GiB", 3), ("MiB", 2), ("KiB", 1)):
        if abs(n) >= 1024**power:
            return f"{n / 1024**power:.1f} {unit}"
    return f"{n} B"
