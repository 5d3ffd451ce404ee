"""The ``X-Rkio-Board`` response header: which board answered, so operators behind a router (LiteLLM, nginx)
can see where each request ran. Pure ASGI and outermost, so every response carries it: errors, 401s, streams.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BOARD_HEADER = "x-rkio-board"


class BoardHeader:
    def __init__(self, app: ASGIApp, board_name: str) -> None:
        self.app = app
        self.header = (BOARD_HEADER.encode(), board_name.encode("ascii"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_board(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_board)
