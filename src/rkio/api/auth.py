"""Request guards: API-key check and request body size limit (pure ASGI, so streaming is unaffected)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rkio.api.errors import BadParameter, error_response, protocol_for_path
from rkio.errors import PayloadTooLarge, RkioError, Unauthorized

OPEN_PATHS = frozenset({"/health"})


class ApiKeyAuth:
    """With an API key configured, every endpoint but ``/health`` needs ``Authorization: Bearer <key>`` or
    ``x-api-key: <key>`` (what Anthropic's clients send)."""

    def __init__(self, app: ASGIApp, api_key: str, exempt: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.key = api_key.encode()
        self.open_paths = OPEN_PATHS | exempt

    def authorized(self, headers: Headers) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key):
            return True
        api_key = headers.get("x-api-key")
        return api_key is not None and hmac.compare_digest(api_key.strip().encode(), self.key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["path"] in self.open_paths
                or self.authorized(Headers(scope=scope))):
            await self.app(scope, receive, send)
            return
        err = Unauthorized("missing or invalid API key (send Authorization: Bearer <key> or x-api-key)")
        response = error_response(err, protocol_for_path(scope["path"]))
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)


class BodyLimit:
    """Refuse bodies over ``max_bytes``: at once from Content-Length, otherwise as soon as the body read so
    far crosses the limit.

    The 413 goes out at once, but the request is not finished until the rest of the body has been read and
    thrown away (``drain``): closing a socket whose peer is still sending makes the kernel answer with a TCP
    reset, which destroys the 413 in the client's receive buffer before the client (typically still writing
    its body) gets to read it. Draining is bounded (``DRAIN_BYTES``, ``DRAIN_IDLE``, ``DRAIN_TOTAL``, as a web
    server's "lingering close"); the 413 says ``Connection: close`` so the connection ends after it.
    """

    DRAIN_BYTES = 64 << 20
    DRAIN_IDLE = 5.0  # seconds without any body arriving
    DRAIN_TOTAL = 30.0

    def __init__(self, app: ASGIApp, max_bytes: int, exempt: frozenset[str] = frozenset(),
                 unbounded_prefix: str | None = None) -> None:
        """``unbounded_prefix``: paths whose handler bounds the body itself (model uploads, by free disk)."""
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt
        self.unbounded_prefix = unbounded_prefix

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body is larger than the limit of {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        unbounded = bool(self.unbounded_prefix) and scope.get("path", "").startswith(self.unbounded_prefix)
        if scope["type"] != "http" or scope["path"] in self.exempt or unbounded:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        error: RkioError | None = None
        if declared is not None:
            if not declared.strip().isdigit():
                error = BadParameter("invalid Content-Length header")
            elif int(declared) > self.max_bytes:
                error = self._too_large()
        if error is not None:
            # a client that waits for "100 Continue" sends no body after a final answer: nothing to drain
            pending = headers.get("expect", "").lower() != "100-continue"
            response = error_response(error, protocol_for_path(scope["path"]))
            await response(scope, receive, self._closing_send(send, receive, lambda: pending))
            return
        received = 0
        overflowed = pending = False

        async def limited_receive() -> Message:
            nonlocal received, overflowed, pending
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    overflowed, pending = True, bool(message.get("more_body", False))
                    raise self._too_large()  # the app answers it (exception handlers): a 413 in its shape
            return message

        closing = self._closing_send(send, receive, lambda: pending)

        async def guarded_send(message: Message) -> None:
            await (closing if overflowed else send)(message)

        await self.app(scope, limited_receive, guarded_send)

    def _closing_send(self, send: Send, receive: Receive, body_pending: Callable[[], bool]) -> Send:
        """``send`` for a refusal: marks the response ``Connection: close`` and, before the response's last
        message, reads away what is left of the request body."""

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            elif message["type"] == "http.response.body" and not message.get("more_body") and body_pending():
                await send({**message, "more_body": True})  # the whole 413 is on the wire now
                await self.drain(receive)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        return closing_send

    async def drain(self, receive: Receive) -> int:
        """Read and discard the request body until it ends, the client leaves or a bound is reached; the
        number of bytes thrown away."""
        drained = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.DRAIN_TOTAL):
                while drained <= self.DRAIN_BYTES:
                    message = await asyncio.wait_for(receive(), self.DRAIN_IDLE)
                    if message["type"] != "http.request":
                        break
                    drained += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
        return drained
