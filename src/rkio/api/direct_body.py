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
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

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
