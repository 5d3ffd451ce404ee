"""Driving an engine generation over HTTP: streamed (SSE / NDJSON) or collected, with disconnect -> cancel.

Headers are committed late so that early failures keep their real status: NDJSON (Ollama) commits at the first
token, like Ollama itself (which answers only after the model is loaded); SSE (OpenAI) commits at the first
token or, when the request waits longer than ``commit_after`` seconds in the queue or for a load, earlier,
and then sends ``: queued position=N`` / ``: loading`` comment lines and a heartbeat comment every
``heartbeat`` seconds until the first token. Once headers are out, an error becomes the stream's final event.

Each request runs its generation in one task and watches for the client's ``http.disconnect`` in a second;
a disconnect cancels the first, which closes the engine's iterator, which aborts the generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any, Protocol, TypeVar

from starlette.types import Receive, Scope, Send

from rkio.api.access import RequestRecord
from rkio.api.direct_body import body_send, send_at_once
from rkio.api.errors import Protocol as WireProtocol
from rkio.api.errors import as_rkio_error, error_response
from rkio.api.lent_socket import LentSocket, lend_socket
from rkio.engine.chunk_push import ChunkPush, RelayFormat
from rkio.engine.types import Done, EngineEvent, Loading, Queued, TokenChunk
from rkio.errors import Cancelled, RkioError, RuntimeFailure, ShuttingDown

T = TypeVar("T")
RECLAIM_WAIT_S = 2.0  # for a lent socket to come back (the runner's reader answers, hung runtime or not)


class ClientGone(Exception):
    """The client disconnected before the response was complete."""


class StreamEncoder(Protocol):
    """Wire format of one streamed response; ``text`` may return b"" while it holds text back."""

    media_type: str
    keepalive: bool  # may send bytes (comments) before the first token

    def waiting(self, event: Queued | Loading) -> bytes: ...
    def heartbeat(self) -> bytes: ...
    def text(self, text: str) -> bytes: ...
    def done(self, done: Done) -> bytes: ...
    def error(self, err: RkioError) -> bytes: ...

    def relay_format(self) -> RelayFormat | None:
        """What ``text`` writes for every later chunk, if that is fixed bytes around the JSON-encoded
        text (a plain reply): then the runner may write them itself (``rkio.engine.chunk_push``)."""
        ...


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def run_until_disconnect(receive: Receive, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` in its own task; if the client disconnects first, cancel it and raise ``ClientGone``."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        watcher.cancel()
    if task.cancelled():
        raise ClientGone()
    return task.result()


async def _anext(events: AsyncIterator[EngineEvent]) -> EngineEvent:
    return await events.__anext__()


async def close_events(events: AsyncIterator[EngineEvent], finished: bool) -> None:
    """Let a finished generator end normally; close an unfinished one (the engine treats that as cancel)."""
    if finished:
        with contextlib.suppress(StopAsyncIteration, RkioError):
            await events.__anext__()
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


async def collect(events: AsyncIterator[EngineEvent], record: RequestRecord) -> tuple[str, Done]:
    """Gather a whole generation (non-streaming responses)."""
    parts: list[str] = []
    finished = False
    try:
        async for event in events:
            if isinstance(event, TokenChunk):
                record.chunk(time.perf_counter(), len(event.token_ids))
                parts.append(event.text)
            elif isinstance(event, Done):
                record.done(event)
                finished = True
                return "".join(parts), event
        raise RuntimeFailure("the engine ended the generation without a result")
    finally:
        await close_events(events, finished)


async def collect_reply(receive: Receive, events: AsyncIterator[EngineEvent],
                        record: RequestRecord) -> tuple[str, Done]:
    """``collect`` under disconnect watch; a client that left is reported as ``Cancelled`` (never sent)."""
    try:
        return await run_until_disconnect(receive, collect(events, record))
    except ClientGone:
        record.outcome = "disconnected"
        raise Cancelled("the client went away") from None


class SseKeepalive:
    """The waiting and heartbeat lines of an SSE ``StreamEncoder``: comments, which SSE clients skip."""

    media_type = "text/event-stream; charset=utf-8"
    keepalive = True

    def waiting(self, event: Queued | Loading) -> bytes:
        if isinstance(event, Queued):
            return f": queued position={event.position}\n\n".encode()
        return b": loading\n\n"

    def heartbeat(self) -> bytes:
        return b": waiting\n\n"


class EngineStream:
    """ASGI response streaming one generation through a ``StreamEncoder``.

    ``headers``: extra response headers, read when they go out (a value may still change until then).
    ``push``: the offer ``events`` was started with (``rkio.engine.chunk_push``): once the first token is
    out, later ones are taken from the runner's read callback and written at once (``send_at_once``),
    or, when the encoder allows it, written by the runner itself to the client's socket, lent to it
    (``rkio.api.lent_socket``).
    """

    def __init__(self, events: AsyncIterator[EngineEvent], encoder: StreamEncoder, protocol: WireProtocol,
                 record: RequestRecord, *, commit_after: float = 1.0, heartbeat: float = 10.0,
                 headers: Mapping[str, str] | None = None, push: ChunkPush | None = None) -> None:
        self.events = events
        self.push = push
        self._direct: Send | None = None
        self._pending: asyncio.Future[None] | None = None  # a pushed chunk's write that had to wait
        self._lent: LentSocket | None = None
        self._lend_asked = False
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        self.encoder = encoder
        self.protocol = protocol
        self.record = record
        self.commit_after = commit_after
        self.heartbeat = heartbeat
        self.committed = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await run_until_disconnect(receive, self._run(scope, receive, send))
        except ClientGone:
            self.record.outcome = "disconnected"

    async def _commit(self, send: Send) -> None:
        self.committed = True
        headers = [(b"content-type", self.encoder.media_type.encode()), (b"cache-control", b"no-cache"),
                   (b"x-accel-buffering", b"no"),
                   *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        finished = False
        try:
            first = await self._first_output(send)
            if not self.committed:
                await self._commit(send)
            finished = await self._stream(first, send, body_send(scope, send))
        except asyncio.CancelledError:
            if self.committed:  # server shutting down (a disconnect leaves nobody to tell)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._send_error(ShuttingDown("server is shutting down"), send), 1)
            raise
        except Exception as exc:
            err = as_rkio_error(exc if not isinstance(exc, StopAsyncIteration) else
                                RuntimeFailure("the engine ended the generation without a result"))
            self.record.outcome, self.record.error = f"error:{err.kind}", err.message
            if self.committed:
                await self._send_error(err, send)
            else:
                await error_response(err, self.protocol)(scope, receive, send)
        finally:
            if self.push is not None:
                self.push.take = self.push.relay = None
            self._drop_pending()
            await close_events(self.events, finished)

    async def _send_error(self, err: RkioError, send: Send) -> None:
        if self._lent is not None and not await self._lent.back(RECLAIM_WAIT_S):
            return  # the runner may still write to the socket: the connection just closes
        await send({"type": "http.response.body", "body": self.encoder.error(err), "more_body": False})

    async def _first_output(self, send: Send) -> TokenChunk | Done:
        """Wait for the first token (or the end), reporting queue/load progress if headers go out early."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.commit_after
        latest: Queued | Loading | None = None
        while True:
            pending = asyncio.ensure_future(_anext(self.events))
            try:
                while True:
                    if self.committed:
                        timeout: float | None = self.heartbeat
                    elif self.encoder.keepalive:
                        timeout = max(0.0, deadline - loop.time())
                    else:
                        timeout = None
                    done, _ = await asyncio.wait({pending}, timeout=timeout)
                    if done:
                        break
                    if not self.committed:
                        await self._commit(send)
                        body = self.encoder.waiting(latest) if latest is not None else b""
                    else:
                        body = self.encoder.heartbeat()
                    if body:
                        await send({"type": "http.response.body", "body": body, "more_body": True})
            finally:
                if not pending.done():
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pending
            event = pending.result()
            if isinstance(event, TokenChunk | Done):
                return event
            latest = event
            if self.committed:
                await send({"type": "http.response.body", "body": self.encoder.waiting(event),
                            "more_body": True})

    async def _stream(self, event: EngineEvent, send: Send, direct: Send) -> bool:
        """Token chunks go to ``direct`` (``rkio.api.direct_body``), the end through the whole stack."""
        record, encoder, events = self.record, self.encoder, self.events
        self._direct = direct
        while True:
            if isinstance(event, TokenChunk):
                await self._settle()
                record.chunk(time.perf_counter(), len(event.token_ids))
                body = encoder.text(event.text)
                if body:
                    await direct({"type": "http.response.body", "body": body, "more_body": True})
            elif isinstance(event, Done):
                await self._settle()
                record.done(event)
                if self._lent is not None and self._lent.lent:
                    raise RuntimeFailure("the generation ended while the runner still held the socket")
                await send({"type": "http.response.body", "body": encoder.done(event), "more_body": False})
                return True
            if self.push is not None:
                self.push.take = self._take
                if not self._lend_asked:  # once: the encoder knows its format after the first chunk
                    self._lend_asked = True
                    self._lent = self.push.relay = lend_socket(direct, encoder.relay_format(), record,
                                                               self._writing)
            event = await events.__anext__()

    def _take(self, chunk: TokenChunk) -> bool:
        """A chunk pushed while ``_stream`` waits: written now, unless an earlier write still waits."""
        pending = self._pending
        if pending is not None:
            if not pending.done() or pending.cancelled() or pending.exception() is not None:
                return False  # behind a slow client, or failed: the task takes it from here
            self._pending = None
        self.record.chunk(time.perf_counter(), len(chunk.token_ids))
        body = self.encoder.text(chunk.text)
        if body:
            assert self._direct is not None  # set before the first take
            self._pending = send_at_once(self._direct, {"type": "http.response.body", "body": body,
                                                        "more_body": True})
        return True

    def _writing(self) -> bool:
        """A pushed chunk's write still waits (or failed): not the moment to lend the socket."""
        pending = self._pending
        return pending is not None and (not pending.done() or pending.cancelled()
                                        or pending.exception() is not None)

    async def _settle(self) -> None:
        """Wait for a pushed chunk's write that had to wait; raises what it raised."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    def _drop_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()
        elif pending is not None and not pending.cancelled():
            pending.exception()  # read, so that asyncio does not log it as never retrieved
