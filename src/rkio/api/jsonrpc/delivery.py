"""Deliver one generation in the form a call asked for: one response, push notifications, nano's
callbacks, or an HTTP pull session; synchronously (``run``) or answered at once and streamed
(``run_async``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from rkio.api.jsonrpc.dispatcher import NO_REPLY, CallContext, StreamForm
from rkio.api.jsonrpc.streams import (
    CallbackStream,
    Generation,
    PullSession,
    PushStream,
    RunOutcome,
    Sink,
    new_stream_id,
)
from rkio.engine.types import EngineEvent

ResultOf = Callable[[RunOutcome], dict[str, Any]]


async def deliver(
    ctx: CallContext,
    form: StreamForm,
    events: AsyncIterator[EngineEvent],
    result_of: ResultOf,
    *,
    asynchronous: bool = False,
    started: dict[str, Any] | None = None,
    track: Callable[[Generation], None] | None = None,
) -> Any:
    """Run ``events`` to the end and answer with ``result_of(outcome)`` in the chosen form.

    ``asynchronous``: answer ``started`` at once and stream in the background. ``track`` receives the
    generation (a lease records it for is_running / abort).
    """
    send = ctx.session.send
    sink: Sink | None = None
    stream_id: str | None = None
    pull: PullSession | None = None
    if form == "pull" or (form != "none" and send is None):
        pull = ctx.pulls.open()
        sink, stream_id, asynchronous = pull, pull.stream_id, True
    elif form == "callbacks" and send is not None:
        sink = CallbackStream(send, ctx.call.id)
    elif form == "push" and send is not None:
        stream_id = new_stream_id()
        sink = PushStream(send, ctx.call.method, stream_id)
    generation = Generation(events, sink)
    if track is not None:
        track(generation)
    if asynchronous:
        spawn = ctx.background if pull is not None or send is None else ctx.session.spawn
        generation.start(lambda coro: spawn(_reported(coro)))
        if pull is not None:
            pull.task = generation.task
        answer = dict(started or {})
        if isinstance(sink, CallbackStream):
            return {**answer, "success": True, "message": "Async inference started"}
        return {**answer, "stream_id": stream_id}
    task = generation.start(_child_task)
    if isinstance(sink, CallbackStream):
        try:
            await task
        except Exception:
            if not sink.answered:
                raise
        return NO_REPLY
    result = result_of(await task)
    return {**result, "stream_id": stream_id} if stream_id is not None else result


def _child_task(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    return asyncio.get_running_loop().create_task(coro)


async def _reported(run: Coroutine[Any, Any, RunOutcome]) -> RunOutcome | None:
    """A background generation: its error has already been streamed to the client as the last chunk."""
    try:
        return await run
    except Exception:
        return None
