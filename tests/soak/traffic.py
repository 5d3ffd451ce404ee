"""One soak request: what it asks for, how it is sent (the official ``openai`` client, or raw httpx streams in
the OpenAI SSE and Ollama NDJSON shapes), and how it ended, judged strictly: the exact complete answer, an
error in the protocol's own shape, or the client's own disconnect; anything else is a violation."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import openai

import simkit

Api = Literal["openai-sdk", "openai-sse", "ollama"]
Ending = Literal["complete", "error", "disconnected", "violation", "overran"]


@dataclass(frozen=True)
class Plan:
    """A request. ``fault`` arms one simulator fault for this run only (``[[fault=...]]``)."""

    rid: int
    model: str
    api: Api
    tokens: int
    deadline: float  # seconds from the start by which it must have ended
    fault: str | None = None
    disconnect_after: int | None = None  # close the stream after this many text pieces
    hangup_at: float | None = None  # or close the connection this many seconds after sending

    @property
    def content(self) -> str:
        words = f"r{self.rid}a r{self.rid}b r{self.rid}c"  # unique words: another request's text is visible
        fault = f" [[fault={self.fault}]]" if self.fault else ""
        return f"{words} [[n={self.tokens}]]{fault}"

    @property
    def expected(self) -> str:
        return simkit.expected_text(self.content, self.tokens)


@dataclass
class Outcome:
    plan: Plan
    started: float  # time.monotonic()
    ended: float
    ending: Ending
    detail: str = ""  # the error message, or what was wrong
    text: str = ""


class Violation(Exception):
    """The response broke the protocol or the request's contract."""


def openai_error_message(body: Any) -> str | None:
    """The message of an OpenAI-shaped error (``{"error": {"message", "type", ...}}``), else None."""
    err = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str) and isinstance(err.get("type"), str):
        return str(err["message"])
    return None


def ollama_error_message(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), str) and set(body) == {"error"}:
        return str(body["error"])
    return None


class Ended(Exception):
    """The request ended with an error in the protocol's shape."""


async def _openai_sdk(client: openai.AsyncOpenAI, plan: Plan, got: list[str]) -> bool:
    """True when complete; False when the soak disconnected on purpose."""
    try:
        stream = await client.chat.completions.create(
            model=plan.model, stream=True, messages=[{"role": "user", "content": plan.content}])
        finish = None
        async for chunk in stream:
            for choice in chunk.choices:
                if finish is not None:
                    raise Violation("a chunk after the finish_reason chunk")
                got.append(choice.delta.content or "")
                finish = choice.finish_reason
            if plan.disconnect_after is not None and len(got) > plan.disconnect_after:
                await stream.close()
                return False
        if finish is None:
            raise Violation("the stream ended without a finish_reason")
        return True
    except openai.APIStatusError as exc:
        message = openai_error_message(exc.body)
        if message is None:
            raise Violation(f"HTTP {exc.status_code} error not in OpenAI shape: {exc.body!r}") from None
        raise Ended(f"{exc.status_code}: {message}") from None
    except openai.APIConnectionError as exc:
        raise Violation(f"connection failed: {exc!r} ({exc.__cause__!r})") from None
    except openai.APIError as exc:  # an error event inside the stream
        message = openai_error_message(exc.body)
        if message is None:
            raise Violation(f"stream error event not in OpenAI shape: {exc.body!r}") from None
        raise Ended(f"stream: {message}") from None


async def _status_error(reply: httpx.Response, shape: Any) -> None:
    body = await reply.aread()
    try:
        message = shape(json.loads(body))
    except ValueError:
        message = None
    if message is None:
        raise Violation(f"HTTP {reply.status_code} error not in the protocol's shape: {body[:200]!r}")
    raise Ended(f"{reply.status_code}: {message}")


DONE = object()  # the SSE stream's "data: [DONE]"


def _sse_line(line: str) -> Any:
    """The JSON of an SSE data line, DONE, or None for blank and comment lines."""
    if not line or line.startswith(":"):
        return None
    if not line.startswith("data: "):
        raise Violation(f"not an SSE data line: {line[:120]!r}")
    return DONE if line == "data: [DONE]" else json.loads(line[6:])


def _sse_piece(event: Any) -> tuple[str, bool]:
    return "".join(choice["delta"].get("content") or "" for choice in event["choices"]), False


def _ndjson_line(line: str) -> Any:
    return json.loads(line) if line else None


def _ollama_piece(event: Any) -> tuple[str, bool]:
    return event["message"]["content"], bool(event.get("done"))


@dataclass(frozen=True)
class Wire:
    """One raw streaming protocol: its path, error shape, line decoding, and (text, last?) of an event."""

    path: str
    error_message: Callable[[Any], str | None]
    decode: Callable[[str], Any]
    piece: Callable[[Any], tuple[str, bool]]


OPENAI_SSE = Wire("/v1/chat/completions", openai_error_message, _sse_line, _sse_piece)
OLLAMA_NDJSON = Wire("/api/chat", ollama_error_message, _ndjson_line, _ollama_piece)


async def _raw_stream(client: httpx.AsyncClient, wire: Wire, plan: Plan, got: list[str]) -> bool:
    """True when complete; False when the soak hung up on purpose."""
    body = {"model": plan.model, "stream": True, "messages": [{"role": "user", "content": plan.content}]}
    async with client.stream("POST", wire.path, json=body) as reply:
        if reply.status_code != 200:
            await _status_error(reply, wire.error_message)
        end: str | None = None
        async for line in reply.aiter_lines():
            event = wire.decode(line)
            if event is None:
                continue
            if end is not None:
                raise Violation(f"data after the stream's end ({end}): {line[:120]!r}")
            if event is DONE:
                end = "done"
            elif "error" in event:
                message = wire.error_message(event)
                if message is None:
                    raise Violation(f"error event not in the protocol's shape: {line[:200]!r}")
                end = f"error: {message}"
            else:
                text, last = wire.piece(event)
                got.append(text)
                if last:
                    end = "done"
                elif plan.disconnect_after is not None and len(got) > plan.disconnect_after:
                    return False
        if end is None:
            raise Violation("the stream ended without its final event or an error event")
        if end != "done":
            raise Ended(end)
        return True


async def _dispatch(plan: Plan, raw: httpx.AsyncClient, sdk: openai.AsyncOpenAI, got: list[str]) -> bool:
    if plan.api == "openai-sdk":
        return await _openai_sdk(sdk, plan, got)
    return await _raw_stream(raw, OPENAI_SSE if plan.api == "openai-sse" else OLLAMA_NDJSON, plan, got)


async def send(plan: Plan, raw: httpx.AsyncClient, sdk: openai.AsyncOpenAI) -> Outcome:
    """Run one request to its end (or its deadline) and judge how it ended."""
    started = time.monotonic()
    got: list[str] = []
    hangup = asyncio.timeout(plan.hangup_at)
    try:
        async with asyncio.timeout(plan.deadline):
            try:
                async with hangup:
                    complete = await _dispatch(plan, raw, sdk, got)
            except TimeoutError:
                if not hangup.expired():
                    raise
                complete = False
    except TimeoutError:
        return _outcome(plan, started, "overran", f"not ended after {plan.deadline:.0f} s",
                       "".join(got))
    except Ended as exc:
        return _judge_partial(plan, started, "error", str(exc), "".join(got))
    except Violation as exc:
        return _outcome(plan, started, "violation", str(exc), "".join(got))
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        return _outcome(plan, started, "violation", f"{type(exc).__name__}: {exc}",
                       "".join(got))
    text = "".join(got)
    if not complete:
        return _judge_partial(plan, started, "disconnected", "", text)
    if text != plan.expected:
        return _outcome(plan, started, "violation",
                       f"wrong text (cross-talk?): {text[:120]!r}", text)
    return _outcome(plan, started, "complete", "", text)


def _outcome(plan: Plan, started: float, ending: Ending, detail: str = "", text: str = "") -> Outcome:
    return Outcome(plan, started, time.monotonic(), ending, detail, text)


def _judge_partial(plan: Plan, started: float, ending: Ending, detail: str, text: str) -> Outcome:
    """Whatever arrived before an error or a disconnect must be the start of this request's own answer."""
    if not plan.expected.startswith(text):
        return _outcome(plan, started, "violation",
                       f"partial text is not this request's (cross-talk?): {text[:120]!r}", text)
    return _outcome(plan, started, ending, detail, text)
