"""``/mcp`` on the HTTP server: MCP over Streamable HTTP, on the in-process engine.

The route sits behind the app's own middleware, so the API key and body limit apply as to every other
endpoint. The SDK's session manager owns a task group that must run for the app's lifetime: the app's
lifespan enters ``McpEndpoint.running()`` (and leaves it before stopping the engine, which cancels the
calls still in flight).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from mcp.server import MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from rkio.api.errors import error_response
from rkio.config import Settings
from rkio.engine.types import Engine
from rkio.errors import ShuttingDown
from rkio.mcp.engine_backend import EngineBackend
from rkio.mcp.tools import build_server

PATH = "/mcp"


class McpEndpoint:
    """The ``/mcp`` route (an ASGI app) and the session manager it hands requests to while running."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self._server: MCPServer = build_server(EngineBackend(engine))
        self._settings = settings
        self._manager: StreamableHTTPSessionManager | None = None

    def route(self) -> Route:
        return Route(PATH, self)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve MCP sessions until the context ends (a session manager runs once: one per lifespan)."""
        # With ``host`` a loopback address the SDK also checks Host/Origin headers (DNS-rebinding
        # protection); bound elsewhere, the API key is the guard, as for /v1.
        self._server.streamable_http_app(streamable_http_path=PATH, host=self._settings.host,
                                         max_request_body_size=self._settings.max_body_bytes)
        manager = self._server.session_manager
        async with manager.run():
            self._manager = manager
            try:
                yield
            finally:
                self._manager = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._manager is None:
            refusal = error_response(ShuttingDown("the MCP endpoint is not running"), "openai")
            await refusal(scope, receive, send)
            return
        await self._manager.handle_request(scope, receive, send)
