"""Request guards: API-key check and request body size limit (pure ASGI, so streaming is unaffected)."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rkio.api.errors import BadParameter, error_response, protocol_for_path
from rkio.errors import PayloadTooLarge, RkioError, Unauthorized

OPEN_PATHS = frozenset({"/health"})


class ApiKeyAuth:
    """With an API key configured, every endpoint but ``/health`` needs ``Authorization: Bearer <key>``."""

    def __init__(self, app: ASGIApp, api_key: str, exempt: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.key = api_key.encode()
        self.open_paths = OPEN_PATHS | exempt

    def authorized(self, headers: Headers) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] != "http" or scope["path"] in self.open_paths
                or self.authorized(Headers(scope=scope))):
            await self.app(scope, receive, send)
            return
        err = Unauthorized("missing or invalid API key (send Authorization: Bearer <key>)")
        response = error_response(err, protocol_for_path(scope["path"]))
        response.headers["WWW-Authenticate"] = "Bearer"
        await response(scope, receive, send)


class BodyLimit:
    """Refuse bodies over ``max_bytes``: early from Content-Length, otherwise while the body is read."""

    def __init__(self, app: ASGIApp, max_bytes: int, exempt: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body is larger than the limit of {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        error: RkioError | None = None
        if declared is not None:
            if not declared.strip().isdigit():
                error = BadParameter("invalid Content-Length header")
            elif int(declared) > self.max_bytes:
                error = self._too_large()
        if error is not None:
            await error_response(error, protocol_for_path(scope["path"]))(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)
