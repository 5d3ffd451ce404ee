"""The ASGI application: routes of the API flavours and operations, guards, error mapping, lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Collection

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from rkio.api.access import RequestLog
from rkio.api.anthropic_routes import AnthropicRoutes
from rkio.api.auth import ApiKeyAuth, BodyLimit
from rkio.api.direct_body import DirectBodyApp
from rkio.api.embeddings_routes import EmbeddingRoutes
from rkio.api.errors import EXCEPTION_HANDLERS
from rkio.api.jsonrpc.service import RpcService
from rkio.api.metrics import ApiMetrics
from rkio.api.ollama_models import BLOBS_PREFIX, OllamaModelRoutes
from rkio.api.ollama_routes import OllamaRoutes
from rkio.api.openai_routes import OpenAIRoutes
from rkio.api.ops_routes import OpsRoutes
from rkio.api.readiness import Readiness
from rkio.api.response_headers import ResponseHeaders
from rkio.config import Settings
from rkio.engine.types import Engine, RuntimeKind
from rkio.mcp.http import McpEndpoint

log = logging.getLogger("rkio.api")

COMMIT_AFTER = 1.0  # SSE: send headers and queue/loading comments after waiting this long without a token
HEARTBEAT = 10.0  # SSE: comment line this often until the first token (long prefills, slow loads)
RPC_PATHS = frozenset({"/rpc", "/ws"})  # JSON-RPC checks the key and the frame size itself, in its format


def create_app(engine: Engine, settings: Settings, *, manage_engine: bool = True,
               commit_after: float = COMMIT_AFTER, heartbeat: float = HEARTBEAT,
               rpc_listeners: bool | None = None,
               runtimes: Collection[RuntimeKind] | None = None) -> Starlette:
    """Build the app. With ``manage_engine`` the lifespan starts the engine and stops it on shutdown;
    with ``rpc_listeners`` (default: same as ``manage_engine``) it also opens the JSON-RPC sockets.
    ``runtimes``: the runtime kinds installed here (``/v1/models`` and ``/ready`` count only models they can
    run); None counts every model. ``app.state.readiness.draining`` turns ``/ready`` false (on SIGTERM)."""
    metrics = ApiMetrics()
    readiness = Readiness(engine, runtimes)
    rpc = RpcService(engine, settings)
    listen = manage_engine if rpc_listeners is None else rpc_listeners
    mcp = McpEndpoint(engine, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_engine:
            await engine.start()
        readiness.draining = False  # a started app serves (also when it is started again, as tests do)
        try:
            if listen:
                await rpc.start()
            async with mcp.running():  # MCP sessions end (their calls cancelled) before the engine stops
                yield
        finally:
            readiness.draining = True
            await rpc.stop()
            if manage_engine:
                log.info("stopping the engine (grace %.0fs)", settings.stop_grace)
                await engine.stop(settings.stop_grace)

    # no middleware here may rewrite response bodies: token chunks go past it (rkio.api.direct_body)
    middleware = [Middleware(ResponseHeaders, board_name=settings.board_name)]  # outermost: every response
    if settings.cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                                     allow_methods=["GET", "POST", "HEAD", "OPTIONS"],
                                     allow_headers=["authorization", "content-type", "x-api-key",
                                                    "anthropic-version", "anthropic-beta"]))
    middleware.append(Middleware(RequestLog, metrics=metrics))
    if settings.api_key:
        middleware.append(Middleware(ApiKeyAuth, api_key=settings.api_key, exempt=RPC_PATHS))
    middleware.append(Middleware(BodyLimit, max_bytes=settings.max_body_bytes, exempt=RPC_PATHS,
                                 unbounded_prefix=BLOBS_PREFIX))
    routes = [*rpc.routes(), *OpenAIRoutes(engine, settings, commit_after, heartbeat).routes(),
              *OllamaRoutes(engine, settings, heartbeat).routes(),
              *AnthropicRoutes(engine, settings, commit_after, heartbeat).routes(),
              *OllamaModelRoutes(engine, settings).routes(),
              *EmbeddingRoutes(engine, settings).routes(),
              *OpsRoutes(engine, metrics, readiness).routes(), mcp.route()]
    app = DirectBodyApp(routes=routes, middleware=middleware, exception_handlers=EXCEPTION_HANDLERS,
                    lifespan=lifespan)
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.rpc = rpc
    app.state.readiness = readiness
    return app
