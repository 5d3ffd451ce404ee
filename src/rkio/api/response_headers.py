"""The headers rkio adds to every HTTP response: ``X-Rkio-Board`` and ``Date``.

``X-Rkio-Board`` says which board answered, so operators behind a router (LiteLLM, nginx) can see where each
request ran. ``Date`` is written here rather than by uvicorn: uvicorn keeps it fresh by waking once a second
whether or not anything is served, and on a board an idle wake-up of the gateway is CPU taken from the
NPU's runtime (the board-pace issue); here it is formatted when a response starts, at most once a second.
Pure ASGI and outermost, so every response carries both: errors, 401s, streams.
"""

from __future__ import annotations

import time
from email.utils import formatdate

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BOARD_HEADER = "x-rkio-board"


class ResponseHeaders:
    """Adds the board's name and the date to each ``http.response.start``."""

    def __init__(self, app: ASGIApp, board_name: str) -> None:
        self.app = app
        self.board = (BOARD_HEADER.encode(), board_name.encode("ascii"))
        self._second = -1
        self._date = (b"date", b"")

    def date(self) -> tuple[bytes, bytes]:
        """The ``Date`` header for now (HTTP-date, RFC 9110 §5.6.7), formatted once per second."""
        now = int(time.time())
        if now != self._second:
            self._second, self._date = now, (b"date", formatdate(now, usegmt=True).encode())
        return self._date

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self.board, self.date()]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
