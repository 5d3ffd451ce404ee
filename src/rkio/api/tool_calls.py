"""Tool calls parsed out of generated text.

Models trained on Qwen/Hermes templates write ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
others answer with a bare JSON object ``{"name": ..., "arguments": ...}`` (or a list of them). The scanner
works on a stream: ordinary text is released as soon as it cannot be the start of a ``<tool_call>`` tag (no
artificial delay), a tag's body is held until its closing tag, and a reply that starts with ``{`` or ``[``
is held to the end and then tried as bare JSON (released as text if it is not a tool call).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from rkio.api.reasoning import partial_suffix

OPEN = "<tool_call>"
CLOSE = "</tool_call>"


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)

    def openai(self, index: int | None = None) -> dict[str, Any]:
        call: dict[str, Any] = {"id": self.id, "type": "function",
                                "function": {"name": self.name, "arguments": self.arguments_json}}
        return call if index is None else {"index": index, **call}

    def ollama(self) -> dict[str, Any]:
        return {"function": {"name": self.name, "arguments": self.arguments}}


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


def call_from_object(obj: Any) -> ToolCall | None:
    """``{"name", "arguments"|"parameters"}`` (arguments as object or JSON string) -> ToolCall."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or not name or not isinstance(args, dict):
        return None
    return ToolCall(new_call_id(), name, args)


def parse_calls_json(text: str) -> list[ToolCall] | None:
    """A JSON object or list of objects that are all tool calls, else None."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    items = value if isinstance(value, list) else [value]
    calls = [call_from_object(item) for item in items]
    if not calls or any(c is None for c in calls):
        return None
    return [c for c in calls if c is not None]


class ToolCallScanner:
    """Feed text; get ``(text, calls)`` back. Text inside recognised tool calls never reaches ``text``."""

    def __init__(self) -> None:
        self._state = "start"  # start -> text | json ; text <-> call
        self._pending = ""

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        if self._state == "text" and not self._pending and "<" not in text:
            return text, []
        self._pending += text
        if self._state == "start":
            stripped = self._pending.lstrip()
            if not stripped:
                return "", []
            self._state = "json" if stripped[0] in "{[" else "text"
        if self._state == "json":
            return "", []
        out: list[str] = []
        calls: list[ToolCall] = []
        while True:
            if self._state == "text":
                start = self._pending.find(OPEN)
                if start < 0:
                    hold = partial_suffix(self._pending, OPEN)
                    cut = len(self._pending) - hold
                    out.append(self._pending[:cut])
                    self._pending = self._pending[cut:]
                    break
                out.append(self._pending[:start])
                self._pending = self._pending[start + len(OPEN):]
                self._state = "call"
            end = self._pending.find(CLOSE)
            if end < 0:
                break
            body, self._pending = self._pending[:end], self._pending[end + len(CLOSE):]
            parsed = parse_calls_json(body.strip())
            if parsed is None:
                out.append(OPEN + body + CLOSE)  # not a call after all: the user sees what the model wrote
            else:
                calls.extend(parsed)
            self._state = "text"
        return "".join(out), calls

    def finish(self) -> tuple[str, list[ToolCall]]:
        """End of reply: bare JSON is tried now; an unclosed ``<tool_call>`` is tried as if closed."""
        pending, self._pending = self._pending, ""
        if self._state == "json":
            calls = parse_calls_json(pending.strip())
            return ("", calls) if calls is not None else (pending, [])
        if self._state == "call":
            calls = parse_calls_json(pending.strip())
            return ("", calls) if calls is not None else (OPEN + pending, [])
        return pending, []


def parse_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """Whole-text version: ``(remaining text, calls)``."""
    scanner = ToolCallScanner()
    t1, c1 = scanner.feed(text)
    t2, c2 = scanner.finish()
    return t1 + t2, c1 + c2
