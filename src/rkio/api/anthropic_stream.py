"""Anthropic Messages wire format: the SSE event sequence and the non-streaming message body.

A stream is ``message_start``, ``ping``, then per content block ``content_block_start``,
``content_block_delta``s (``thinking_delta`` / ``text_delta`` / ``input_json_delta``) and
``content_block_stop``, and finally ``message_delta`` (stop_reason, usage) and ``message_stop``. The prompt's
token count is known only at the end, so ``message_start`` carries ``input_tokens: 0`` and
``message_delta`` the real figure (its usage is cumulative and overrides, as Anthropic's clients expect).
While a request waits in the queue or for a load, SSE comment lines keep the connection alive.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from rkio.api.errors import stream_error_event
from rkio.api.reply import Reply, ReplyParser
from rkio.api.streaming import SseKeepalive
from rkio.api.tool_calls import ToolCall
from rkio.engine.chunk_push import RelayFormat
from rkio.engine.types import Done
from rkio.errors import RkioError

_encode = msgspec.json.encode
BlockType = Literal["text", "thinking", "tool_use"]


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _encode({"type": kind, **data}) + b"\n\n"


def tool_use_id(call: ToolCall) -> str:
    return "toolu_" + call.id.removeprefix("call_")


def stop_reason(done: Done, has_calls: bool, stops: tuple[str, ...]) -> tuple[str, str | None]:
    """``(stop_reason, stop_sequence)``: a stop string of the request's is a "stop_sequence"; the chat
    template's end-of-turn markers and the model's own end are an "end_turn"."""
    if has_calls:
        return "tool_use", None
    if done.finish_reason == "length":
        return "max_tokens", None
    if done.stop_sequence is not None and done.stop_sequence in stops:
        return "stop_sequence", done.stop_sequence
    return "end_turn", None


def usage_body(done: Done) -> dict[str, int]:
    return {"input_tokens": done.usage.prompt_tokens, "output_tokens": done.usage.completion_tokens}


def message_body(message_id: str, model: str, reply: Reply, done: Done,
                 stops: tuple[str, ...]) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if reply.reasoning:
        content.append({"type": "thinking", "thinking": reply.reasoning, "signature": ""})
    if reply.content and (reply.content.strip() or not reply.calls):
        content.append({"type": "text", "text": reply.content})
    content.extend({"type": "tool_use", "id": tool_use_id(c), "name": c.name, "input": c.arguments}
                   for c in reply.calls)
    reason, sequence = stop_reason(done, bool(reply.calls), stops)
    return {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": reason, "stop_sequence": sequence, "usage": usage_body(done)}


class MessagesStreamEncoder(SseKeepalive):
    """The ``StreamEncoder`` of ``POST /v1/messages`` with ``stream: true``."""

    def __init__(self, message_id: str, model: str, parser: ReplyParser, stops: tuple[str, ...]) -> None:
        self.message_id = message_id
        self.model = model
        self.parser = parser
        self.stops = stops
        self._started = False
        self._open: BlockType | None = None
        self._index = -1
        self._n_calls = 0

    def error(self, err: RkioError) -> bytes:
        return stream_error_event(err, "anthropic")

    def _opening(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        message: dict[str, Any] = {
            "id": self.message_id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}
        return _event("message_start", {"message": message}) + _event("ping", {})

    def _close_block(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"index": self._index})

    def _block(self, kind: BlockType, start: dict[str, Any]) -> bytes:
        out = self._close_block()
        self._index += 1
        self._open = kind
        return out + _event("content_block_start", {"index": self._index, "content_block": start})

    def _delta(self, kind: Literal["text", "thinking"], text: str) -> bytes:
        out = b""
        if self._open != kind:
            start = {"type": "text", "text": ""} if kind == "text" else \
                {"type": "thinking", "thinking": "", "signature": ""}
            out = self._block(kind, start)
        delta = {"type": f"{kind}_delta", kind: text}
        return out + _event("content_block_delta", {"index": self._index, "delta": delta})

    def _reply(self, reply: Reply) -> bytes:
        out = []
        if reply.reasoning:
            out.append(self._delta("thinking", reply.reasoning))
        if reply.content and (self._open == "text" or reply.content.strip()):
            out.append(self._delta("text", reply.content))
        for call in reply.calls:
            start = {"type": "tool_use", "id": tool_use_id(call), "name": call.name, "input": {}}
            out.append(self._block("tool_use", start))
            delta = {"type": "input_json_delta", "partial_json": call.arguments_json}
            out.append(_event("content_block_delta", {"index": self._index, "delta": delta}))
            out.append(self._close_block())
            self._n_calls += 1
        return b"".join(out)

    def relay_format(self) -> RelayFormat | None:
        # only once a plain reply's text block is open is every chunk a delta of that same block
        if not (self.parser.passthrough and self._open == "text"):
            return None
        marker = "\0"  # never in a token's text as such: JSON writes it \u0000
        event = _event("content_block_delta", {"index": self._index,
                                               "delta": {"type": "text_delta", "text": marker}})
        prefix, suffix = event.split(_encode(marker))
        return RelayFormat(prefix, suffix)

    def text(self, text: str) -> bytes:
        return self._opening() + self._reply(self.parser.feed(text))

    def done(self, done: Done) -> bytes:
        body = self._opening() + self._reply(self.parser.finish()) + self._close_block()
        reason, sequence = stop_reason(done, self._n_calls > 0, self.stops)
        return body + _event("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": sequence},
                                               "usage": usage_body(done)}) + _event("message_stop", {})
