"""JSON-RPC on the HTTP server: ``POST /rpc`` (one message or batch per request; streams are pulled) and
``GET /ws`` (one message per text frame; streams are pushed). Both need the API key header when one is set."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Callable
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from rkio.api.jsonrpc.dispatcher import Dispatcher
from rkio.api.jsonrpc.protocol import encode, error_message
from rkio.api.jsonrpc.session import Send, Session
from rkio.api.streaming import ClientGone, run_until_disconnect
from rkio.errors import PayloadTooLarge, Unauthorized

JSON = "application/json"


def header_key_ok(headers: Headers, api_key: str | None) -> bool:
    """``Authorization: Bearer KEY`` or ``X-API-Key: KEY``; always true without a configured key."""
    if api_key is None:
        return True
    scheme, _, token = headers.get("authorization", "").partition(" ")
    given = token.strip() if scheme.lower() == "bearer" else headers.get("x-api-key", "")
    return hmac.compare_digest(given.encode(), api_key.encode())


class WebTransports:
    def __init__(
        self,
        dispatcher: Dispatcher,
        api_key: str | None,
        http_session: Callable[[bool], Session],
        ws_session: Callable[[Send, bool], Session],
    ) -> None:
        self.dispatcher = dispatcher
        self.api_key = api_key
        self.http_session = http_session
        self.ws_session = ws_session

    def routes(self) -> list[BaseRoute]:
        return [Route("/rpc", self.http, methods=["POST"]), WebSocketRoute("/ws", self.websocket)]

    async def _body(self, request: Request) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.dispatcher.max_frame:
                raise PayloadTooLarge(
                    f"request body is larger than the frame limit of {self.dispatcher.max_frame} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def http(self, request: Request) -> Response:
        if not header_key_ok(request.headers, self.api_key):
            err = Unauthorized("missing or invalid API key (send Authorization: Bearer <key>)")
            return Response(
                encode(error_message(None, err)), 401, media_type=JSON, headers={"WWW-Authenticate": "Bearer"}
            )
        try:
            body = await self._body(request)
        except PayloadTooLarge as exc:
            return Response(encode(error_message(None, exc)), 413, media_type=JSON)
        except ClientDisconnect:
            return Response(status_code=204)
        session = self.http_session(True)
        try:
            reply = await run_until_disconnect(request.receive, self.dispatcher.handle(body, session))
        except ClientGone:
            return Response(status_code=204)
        finally:
            await session.close()
        if reply is None:
            return Response(status_code=204)
        return Response(reply, 200, media_type=JSON)

    async def websocket(self, websocket: WebSocket) -> None:
        if not header_key_ok(websocket.headers, self.api_key):
            await websocket.close(code=1008, reason="missing or invalid API key")
            return
        await websocket.accept()
        lock = asyncio.Lock()

        async def send_bytes(data: bytes) -> None:
            async with lock:
                await websocket.send_text(data.decode())

        async def send(message: dict[str, Any]) -> None:
            await send_bytes(encode(message))

        session = self.ws_session(send, True)

        async def answer(data: bytes) -> None:
            reply = await self.dispatcher.handle(data, session)
            if reply is not None:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                    await send_bytes(reply)

        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes") or (message.get("text") or "").encode()
                await session.admit(answer(data))
        except WebSocketDisconnect:
            pass
        finally:
            await session.close()
