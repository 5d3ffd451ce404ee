"""OpenAI wire format: SSE chunk encoders (constant JSON parts pre-rendered, only the delta text is encoded
per chunk) and the non-streaming response bodies."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from rkio.api.errors import stream_error_event
from rkio.api.reply import Reply, ReplyParser
from rkio.api.streaming import SseKeepalive
from rkio.engine.chunk_push import RelayFormat
from rkio.engine.types import Done
from rkio.errors import RkioError

_encode = msgspec.json.encode
DONE_LINE = b"data: [DONE]\n\n"


def usage_body(done: Done) -> dict[str, int]:
    u = done.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens}


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + _encode(obj) + b"\n\n"


class _SseBase(SseKeepalive):
    def error(self, err: RkioError) -> bytes:
        return stream_error_event(err, "openai")

    def _closing(self, envelope: dict[str, Any], choice: dict[str, Any], done: Done,
                 include_usage: bool) -> bytes:
        """The last choice event, the usage event when asked for (``stream_options``), then [DONE]."""
        final: dict[str, Any] = {**envelope, "choices": [choice]}
        if not include_usage:
            return _sse(final) + DONE_LINE
        final["usage"] = None
        return _sse(final) + _sse({**envelope, "choices": [], "usage": usage_body(done)}) + DONE_LINE


class ChatStreamEncoder(_SseBase):
    """``chat.completion.chunk`` events: role first, then content / reasoning_content / tool_calls deltas."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool,
                 parser: ReplyParser) -> None:
        self.parser = parser
        self.include_usage = include_usage
        self._envelope = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                          "model": model, "system_fingerprint": None}
        head = _encode(self._envelope)[:-1] + b',"choices":[{"index":0,"delta":'
        self._head = b"data: " + head
        usage = b',"usage":null' if include_usage else b""
        self._tail = b',"logprobs":null,"finish_reason":null}]' + usage + b"}\n\n"
        self._started = False
        self._n_calls = 0
        self._plain = parser.passthrough  # no reasoning split, no tool calls: every chunk is content

    def _delta(self, key: bytes, text: str) -> bytes:
        return self._head + b'{"' + key + b'":' + _encode(text) + b"}" + self._tail

    def _opening(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        return self._head + b'{"role":"assistant","content":""}' + self._tail

    def _reply(self, reply: Reply) -> bytes:
        out = []
        if reply.reasoning:
            out.append(self._delta(b"reasoning_content", reply.reasoning))
        if reply.content:
            out.append(self._delta(b"content", reply.content))
        for call in reply.calls:
            delta = json.dumps({"tool_calls": [call.openai(self._n_calls)]}, ensure_ascii=False).encode()
            out.append(self._head + delta + self._tail)
            self._n_calls += 1
        return b"".join(out)

    def relay_format(self) -> RelayFormat | None:
        if not (self._plain and self._started):
            return None
        return RelayFormat(self._head + b'{"content":', b"}" + self._tail)

    def text(self, text: str) -> bytes:
        if self._plain:  # the common chunk skips the parser and its Reply
            return self._opening() + self._delta(b"content", text) if text else self._opening()
        return self._opening() + self._reply(self.parser.feed(text))

    def done(self, done: Done) -> bytes:
        body = self._opening() + self._reply(self.parser.finish())
        reason = "tool_calls" if self._n_calls else done.finish_reason
        return body + self._closing(self._envelope, {
            "index": 0, "delta": {}, "logprobs": None, "finish_reason": reason}, done, self.include_usage)


class CompletionStreamEncoder(_SseBase):
    """``text_completion`` events of /v1/completions."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool,
                 echo_prompt: str = "") -> None:
        self.include_usage = include_usage
        self._envelope = {"id": completion_id, "object": "text_completion", "created": created,
                          "model": model}
        self._head = b"data: " + _encode(self._envelope)[:-1] + b',"choices":[{"text":'
        self._tail = b',"index":0,"logprobs":null,"finish_reason":null}]' \
            + (b',"usage":null' if include_usage else b"") + b"}\n\n"
        self._echo = echo_prompt

    def relay_format(self) -> RelayFormat | None:
        return None if self._echo else RelayFormat(self._head, self._tail)

    def text(self, text: str) -> bytes:
        if self._echo:
            text, self._echo = self._echo + text, ""
        return self._head + _encode(text) + self._tail if text else b""

    def done(self, done: Done) -> bytes:
        body = self.text("") if self._echo else b""
        return body + self._closing(self._envelope, {
            "text": "", "index": 0, "logprobs": None, "finish_reason": done.finish_reason}, done,
            self.include_usage)


def chat_completion_body(completion_id: str, created: int, model: str, reply: Reply,
                         done: Done) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    reason: str = done.finish_reason
    if reply.calls:
        message["tool_calls"] = [c.openai() for c in reply.calls]
        message["content"] = reply.content if reply.content.strip() else None
        reason = "tool_calls"
    return {"id": completion_id, "object": "chat.completion", "created": created, "model": model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reason}],
            "usage": usage_body(done)}


def completion_body(completion_id: str, created: int, model: str, text: str, done: Done) -> dict[str, Any]:
    return {"id": completion_id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": done.finish_reason}],
            "usage": usage_body(done)}
