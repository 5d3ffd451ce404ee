"""The server's own ``send`` for the token chunks of a streamed response, past the middleware stack.

Every middleware of the app (Starlette's error and exception layers, the board header, CORS, the access
log, the API key, the body limit) acts on ``http.response.start`` only and forwards body messages
unchanged. At an NPU's pace each token is a chunk of its own, and each wrapper is one more coroutine run
with cold caches per token (the board-pace issue: CPU per token). So the app leaves the server's ``send``
in the scope, and a stream sends its token chunks there once its headers (and anything that may change
them) have gone through the whole stack. The last message of a response still takes the long way, so a
wrapper that waits for the end of the response sees it.

A middleware that rewrites response bodies (compression, say) cannot be added to this app; the list of
middleware is checked by a test.

``send_at_once`` runs such a ``send`` to its end inside a callback (the runner's pipe being read), for a
chunk pushed past the request's task (``rkio.engine.chunk_push``): uvicorn's ``send`` of a body chunk only
waits when the client reads slower than the server writes (flow control), and only then is a task made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import CoroutineType
from typing import Any

from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

SCOPE_KEY = "rkio.direct_send"


class DirectBodyApp(Starlette):
    """A Starlette app that records the server's ``send`` in each HTTP scope, for ``body_send``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[SCOPE_KEY] = send
        await super().__call__(scope, receive, send)


def body_send(scope: Scope, send: Send) -> Send:
    """Where a streamed response's middle body chunks go: the server's ``send`` if known, else ``send``."""
    direct: Send | None = scope.get(SCOPE_KEY)
    return direct if direct is not None else send


def send_at_once(send: Send, message: Message) -> asyncio.Future[None] | None:
    """Run ``send(message)`` now; None once it completed without waiting (the usual case).

    When it has to wait, the rest of it runs in a task, which is returned; when it raised, a finished
    future holding the error is. The caller awaits either before it sends anything else.
    """
    coro = send(message)
    if type(coro) is not CoroutineType:  # an awaitable of another kind: a task runs it
        return asyncio.ensure_future(coro)
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    except Exception as exc:
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(exc)
        return failed
    task = asyncio.ensure_future(_resume(coro, yielded))
    # however the task ends, the send ends with it: cancelled before its first step, the task never even
    # enters _resume, and the send would stay suspended until garbage collection
    task.add_done_callback(lambda _: coro.close())
    return task


async def _resume(coro: Coroutine[Any, Any, None], yielded: object) -> None:
    """Drive ``coro`` on from where it suspended, as its task would have: it waits for ``yielded``."""
    while True:
        if isinstance(yielded, asyncio.Future):
            await asyncio.wait((yielded,))  # its result or error is read by ``coro`` itself
        else:
            await asyncio.sleep(0)  # a bare yield
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
