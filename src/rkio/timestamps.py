"""UTC timestamps in RFC 3339 with microseconds (``2026-12-02T15:45:33.123456Z``), cheap enough per token.

Ollama writes one as ``created_at`` in every streamed line, and a token's line may be written by the
gateway or, relayed, by the runner (``rkio.engine.chunk_push``): both use this one format.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class _SecondCache:
    """The date and time of the current second, formatted once."""

    second = -1
    text = ""


def utc_timestamp(at: float | None = None) -> str:
    """``at`` (seconds since the epoch; now if None) as RFC 3339 with microseconds, in UTC."""
    if at is not None:
        return datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    second, nanos = divmod(time.time_ns(), 1_000_000_000)
    if second != _SecondCache.second:  # datetime's isoformat costs ~10x this per call
        _SecondCache.second = second
        _SecondCache.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_SecondCache.text}.{nanos // 1000:06d}Z"
