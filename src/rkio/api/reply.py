"""A reply as the client sees it: reasoning, content and tool calls, from the engine's raw text."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rkio.api.reasoning import ThinkSplitter, split_reasoning
from rkio.api.tool_calls import ToolCall, ToolCallScanner, parse_tool_calls


@dataclass(slots=True)
class Reply:
    content: str
    reasoning: str = ""
    calls: list[ToolCall] = field(default_factory=list)


class ReplyParser:
    """Incremental: ``feed`` each engine chunk, ``finish`` at the end. Pass-through when nothing is asked."""

    def __init__(self, think: bool, tools: bool) -> None:
        self._think = ThinkSplitter() if think else None
        self._tools = ToolCallScanner() if tools else None

    @property
    def passthrough(self) -> bool:
        return self._think is None and self._tools is None

    def feed(self, text: str) -> Reply:
        reasoning = ""
        if self._think is not None:
            reasoning, text = self._think.feed(text)
        calls: list[ToolCall] = []
        if self._tools is not None and text:
            text, calls = self._tools.feed(text)
        return Reply(text, reasoning, calls)

    def finish(self) -> Reply:
        reasoning = text = ""
        calls: list[ToolCall] = []
        if self._think is not None:
            reasoning, text = self._think.finish()
        if self._tools is not None:
            fed, calls = self._tools.feed(text) if text else ("", [])
            rest, more = self._tools.finish()
            text, calls = fed + rest, calls + more
        return Reply(text, reasoning, calls)


def parse_reply(text: str, think: bool, tools: bool, json_mode: bool = False) -> Reply:
    """Whole-text version used by non-streaming responses."""
    reasoning = ""
    if think:
        reasoning, text = split_reasoning(text)
    calls: list[ToolCall] = []
    if tools:
        text, calls = parse_tool_calls(text)
    if json_mode and not calls:
        text = extract_json(text)
    return Reply(text, reasoning, calls)


def json_instruction(schema: dict[str, Any] | None) -> str:
    """System-prompt text asking for JSON output (best effort: nothing constrains decoding)."""
    text = "Respond only with a single valid JSON value, without any text before or after it."
    if schema:
        text += " The JSON must conform to this JSON schema: " + json.dumps(schema, ensure_ascii=False)
    return text


def extract_json(text: str) -> str:
    """The first complete JSON object/array in ``text`` (code fences and chatter trimmed), else ``text``."""
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch in "{[":
            try:
                _, end = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                continue
            return text[i:end]
    return text
