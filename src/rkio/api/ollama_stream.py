"""Ollama wire format: NDJSON chunk encoders and the final/non-streaming bodies (durations in nanoseconds)."""

from __future__ import annotations

from typing import Any

import msgspec

from rkio.api.errors import stream_error_event
from rkio.api.reply import Reply, ReplyParser
from rkio.engine.chunk_push import RelayFormat
from rkio.engine.types import Done, Loading, Queued
from rkio.errors import RkioError
from rkio.timestamps import utc_timestamp

_encode = msgspec.json.encode


timestamp = utc_timestamp  # RFC 3339 with microseconds in UTC, as Ollama writes ``created_at``


def _ns(seconds: float | None) -> int:
    return int((seconds or 0.0) * 1e9)


def done_fields(done: Done) -> dict[str, Any]:
    """``done_reason``, token counts and the four durations, from the engine's usage and timings."""
    t, perf = done.timings, done.perf
    prefill = t.prefill_s if t.prefill_s is not None else (perf.prefill_ms / 1000 if perf else None)
    generate = t.generate_s if t.generate_s is not None else (perf.generate_ms / 1000 if perf else None)
    return {"done": True, "done_reason": done.finish_reason, "total_duration": _ns(t.total_s),
            "load_duration": _ns(t.load_s), "prompt_eval_count": done.usage.prompt_tokens,
            "prompt_eval_duration": _ns(prefill), "eval_count": done.usage.completion_tokens,
            "eval_duration": _ns(generate)}


def chat_message(reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning:
        message["thinking"] = reply.reasoning
    if reply.calls:
        message["tool_calls"] = [c.ollama() for c in reply.calls]
    return message


class _NdjsonBase:
    media_type = "application/x-ndjson"
    keepalive = False  # headers wait for the first token, as Ollama's own answer waits for the load

    def __init__(self, model: str, parser: ReplyParser) -> None:
        self.model = model
        self.parser = parser
        self._plain = parser.passthrough  # no reasoning split, no tool calls: every chunk is content
        self._head = b'{"model":' + _encode(model) + b',"created_at":"'

    _STAMP_SUFFIX = b""  # what follows the timestamp of a plain chunk, up to its text
    _SUFFIX = b""  # what follows its text

    def waiting(self, event: Queued | Loading) -> bytes:
        return b""

    def relay_format(self) -> RelayFormat | None:
        if not self._plain:
            return None
        return RelayFormat(self._head, self._SUFFIX, self._STAMP_SUFFIX)

    def heartbeat(self) -> bytes:
        return b""

    def error(self, err: RkioError) -> bytes:
        return stream_error_event(err, "ollama")

    def _line(self, obj: dict[str, Any]) -> bytes:
        return _encode({"model": self.model, "created_at": timestamp(), **obj}) + b"\n"


class ChatNdjsonEncoder(_NdjsonBase):
    """/api/chat chunks: ``{"model","created_at","message":{...},"done":false}``."""

    _STAMP_SUFFIX = b'","message":{"role":"assistant","content":'
    _SUFFIX = b'},"done":false}\n'

    def _content(self, text: str) -> bytes:
        if not text:
            return b""
        return self._head + timestamp().encode() + self._STAMP_SUFFIX + _encode(text) + self._SUFFIX

    def _reply(self, reply: Reply) -> bytes:
        if not reply.reasoning and not reply.calls:
            return self._content(reply.content)
        return self._line({"message": chat_message(reply), "done": False})

    def text(self, text: str) -> bytes:
        # the common chunk (no reasoning split, no tool calls) skips the parser and its Reply
        return self._content(text) if self._plain else self._reply(self.parser.feed(text))

    def done(self, done: Done) -> bytes:
        tail = self._reply(self.parser.finish())
        return tail + self._line({"message": {"role": "assistant", "content": ""}, **done_fields(done)})


class GenerateNdjsonEncoder(_NdjsonBase):
    """/api/generate chunks: ``{"model","created_at","response":"...","done":false}`` (+ ``thinking``)."""

    _STAMP_SUFFIX = b'","response":'
    _SUFFIX = b',"done":false}\n'

    def _content(self, text: str) -> bytes:
        if not text:
            return b""
        return self._head + timestamp().encode() + self._STAMP_SUFFIX + _encode(text) + self._SUFFIX

    def _reply(self, reply: Reply) -> bytes:
        if not reply.reasoning:
            return self._content(reply.content)
        return self._line({"response": reply.content, "thinking": reply.reasoning, "done": False})

    def text(self, text: str) -> bytes:
        return self._content(text) if self._plain else self._reply(self.parser.feed(text))

    def done(self, done: Done) -> bytes:
        return self._reply(self.parser.finish()) + self._line({"response": "", **done_fields(done)})
