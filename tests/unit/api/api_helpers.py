"""Parsing helpers for SSE and NDJSON response bodies."""

from __future__ import annotations

import json
from typing import Any


def sse_events(body: str) -> list[Any]:
    """``data:`` payloads of an SSE body, JSON-decoded except ``[DONE]``; asserts the framing."""
    assert body.endswith("\n\n"), "every SSE event ends with a blank line"
    events: list[Any] = []
    for block in body.split("\n\n")[:-1]:
        lines = [ln for ln in block.split("\n") if not ln.startswith(":")]
        if not lines:
            continue
        assert len(lines) == 1 and lines[0].startswith("data: "), block
        payload = lines[0][len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def ndjson_lines(body: str) -> list[dict[str, Any]]:
    assert body.endswith("\n")
    return [json.loads(line) for line in body.splitlines()]
