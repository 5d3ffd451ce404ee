"""The three streaming forms, as sinks a generation writes its tokens into.

- ``PushStream``: notifications ``{method: <method called>, params: {stream_id, seq, delta, end, token_id}}``
  (the last one with ``end: true``, ``finish_reason`` and ``perf``), then the normal response with the full
  text.
- ``CallbackStream``: nano's form, one message per runtime callback carrying the request's id and
  ``result: {text, token_id, _callback_state}``; the FINISH (2) or ERROR (3) message is the response itself.
- ``PullSession`` (HTTP): chunks wait in the session until the client asks for them with ``{stream_id}``; a
  session not pulled for ``ttl`` seconds expires, which cancels (aborts) its generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from rkio.api.jsonrpc.protocol import StreamExpired, error_object, notification_message, result_message
from rkio.engine.types import Done, EngineEvent, TokenChunk
from rkio.errors import Busy
from rkio.runtime.base import Perf

log = logging.getLogger("rkio.jsonrpc")

Send = Callable[[dict[str, Any]], Awaitable[None]]
CALLBACK_NORMAL, CALLBACK_FINISH, CALLBACK_ERROR = 0, 2, 3  # LLMCallState values
MAX_PULL_SESSIONS = 256


def perf_body(perf: Perf | None) -> dict[str, Any] | None:
    """RKLLMPerfStat as rkllm.h spells it."""
    if perf is None:
        return None
    return {
        "prefill_time_ms": perf.prefill_ms,
        "prefill_tokens": perf.prefill_tokens,
        "generate_time_ms": perf.generate_ms,
        "generate_tokens": perf.generate_tokens,
        "memory_usage_mb": perf.memory_usage_mb,
    }


class Sink(Protocol):
    async def token(self, text: str, token_ids: tuple[int, ...]) -> None: ...
    async def end(self, outcome: RunOutcome) -> None: ...
    async def fail(self, exc: BaseException) -> None: ...


@dataclass(slots=True)
class RunOutcome:
    text: str
    token_ids: list[int]
    finish_reason: str  # stop | length | abort
    done: Done | None  # None when aborted

    @property
    def perf(self) -> dict[str, Any] | None:
        return perf_body(self.done.perf if self.done is not None else None)


class Generation:
    """One generation feeding ``sink``. ``abort`` ends it early with finish_reason "abort" (an answer, not an
    error); any other cancellation (the client went away) propagates. Either way the engine aborts the run."""

    def __init__(self, events: AsyncIterator[EngineEvent], sink: Sink | None) -> None:
        self.events = events
        self.sink = sink
        self.pieces: list[str] = []
        self.token_ids: list[int] = []
        self.aborted = False
        self.task: asyncio.Task[RunOutcome] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def start(
        self, spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]
    ) -> asyncio.Task[RunOutcome]:
        self.task = spawn(self.run())
        return self.task

    def abort(self) -> bool:
        """Stop the generation; False when it was not running."""
        if not self.running or self.task is None:
            return False
        self.aborted = True
        self.task.cancel()
        return True

    async def run(self) -> RunOutcome:
        done: Done | None = None
        try:
            async with contextlib.aclosing(cast(AsyncGenerator[EngineEvent, None], self.events)) as stream:
                async for event in stream:
                    if isinstance(event, TokenChunk):
                        self.pieces.append(event.text)
                        self.token_ids.extend(event.token_ids)
                        if self.sink is not None:
                            await self.sink.token(event.text, event.token_ids)
                    elif isinstance(event, Done):
                        done = event
        except asyncio.CancelledError:
            if not self.aborted:
                raise
            outcome = RunOutcome("".join(self.pieces), self.token_ids, "abort", None)
        except Exception as exc:
            if self.sink is not None:
                await self.sink.fail(exc)
            raise
        else:
            if done is None:  # the engine's contract is exactly one Done; a stream without one is a bug
                raise RuntimeError("the generation ended without a Done event")
            outcome = RunOutcome("".join(self.pieces), self.token_ids, done.finish_reason, done)
        if self.sink is not None:
            await self.sink.end(outcome)
        return outcome


def new_stream_id() -> str:
    return secrets.token_hex(8)


class PushStream:
    def __init__(self, send: Send, method: str, stream_id: str) -> None:
        self.send = send
        self.method = method
        self.stream_id = stream_id
        self.seq = 0

    async def _chunk(self, delta: str, end: bool, **extra: Any) -> None:
        params = {"stream_id": self.stream_id, "seq": self.seq, "delta": delta, "end": end, **extra}
        self.seq += 1
        await self.send(notification_message(self.method, params))

    async def token(self, text: str, token_ids: tuple[int, ...]) -> None:
        await self._chunk(text, False, token_id=token_ids[-1] if token_ids else None)

    async def end(self, outcome: RunOutcome) -> None:
        await self._chunk("", True, finish_reason=outcome.finish_reason, perf=outcome.perf)

    async def fail(self, exc: BaseException) -> None:
        await self._chunk("", True, finish_reason="error", error=error_object(exc))


class CallbackStream:
    """nano's callbacks; after FINISH/ERROR nothing else is sent for the request (``answered``)."""

    def __init__(self, send: Send, request_id: Any) -> None:
        self.send = send
        self.request_id = request_id
        self.answered = False

    async def token(self, text: str, token_ids: tuple[int, ...]) -> None:
        await self.send(
            result_message(
                self.request_id,
                {
                    "text": text,
                    "token_id": token_ids[-1] if token_ids else -1,
                    "_callback_state": CALLBACK_NORMAL,
                },
            )
        )

    async def end(self, outcome: RunOutcome) -> None:
        self.answered = True
        await self.send(
            result_message(
                self.request_id,
                {
                    "text": "",
                    "token_id": -1,
                    "_callback_state": CALLBACK_FINISH,
                    "finish_reason": outcome.finish_reason,
                    "perf": outcome.perf,
                },
            )
        )

    async def fail(self, exc: BaseException) -> None:
        self.answered = True
        await self.send(
            result_message(
                self.request_id,
                {"text": "", "token_id": -1, "_callback_state": CALLBACK_ERROR, "error": error_object(exc)},
            )
        )


@dataclass(slots=True)
class PullSession:
    stream_id: str
    last_access: float
    chunks: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0
    ended: bool = False
    task: asyncio.Task[Any] | None = None

    def _append(self, delta: str, end: bool, **extra: Any) -> None:
        self.chunks.append({"seq": self.seq, "delta": delta, "end": end, **extra})
        self.seq += 1
        self.ended = self.ended or end

    async def token(self, text: str, token_ids: tuple[int, ...]) -> None:
        self._append(text, False, token_id=token_ids[-1] if token_ids else None)

    async def end(self, outcome: RunOutcome) -> None:
        self._append("", True, finish_reason=outcome.finish_reason, perf=outcome.perf)

    async def fail(self, exc: BaseException) -> None:
        self._append("", True, finish_reason="error", error=error_object(exc))


class PullStreams:
    """HTTP pull sessions, shared by every HTTP request of the server."""

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.clock = clock
        self._sessions: dict[str, PullSession] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self) -> PullSession:
        if len(self._sessions) >= MAX_PULL_SESSIONS:
            raise Busy(f"too many undrained stream sessions (at most {MAX_PULL_SESSIONS})", retry_after=1.0)
        session = PullSession(new_stream_id(), self.clock())
        self._sessions[session.stream_id] = session
        return session

    def pull(self, stream_id: object) -> list[dict[str, Any]]:
        """The chunks not yet delivered (and forget them); after the end chunk the session is gone."""
        session = self._sessions.get(stream_id) if isinstance(stream_id, str) else None
        if session is None:
            raise StreamExpired(stream_id)
        session.last_access = self.clock()
        chunks, session.chunks = session.chunks, []
        if session.ended:
            del self._sessions[session.stream_id]
        return chunks

    async def expire(self) -> list[str]:
        """Drop sessions nobody pulled for ``ttl`` seconds, aborting their generations."""
        now = self.clock()
        stale = [s for s in self._sessions.values() if now - s.last_access > self.ttl]
        for session in stale:
            del self._sessions[session.stream_id]
            log.info("stream %s expired undrained after %.0fs", session.stream_id, self.ttl)
            if session.task is not None and not session.task.done():
                session.task.cancel()
                await asyncio.gather(session.task, return_exceptions=True)
        return [s.stream_id for s in stale]

    async def close(self) -> None:
        self.ttl = -1.0
        await self.expire()
