"""Operations endpoints: liveness, readiness, Prometheus metrics, full engine status, the OpenAPI document."""

from __future__ import annotations

import dataclasses
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from rkio.api.metrics import ApiMetrics
from rkio.api.openapi import build_openapi
from rkio.api.readiness import Readiness
from rkio.engine.types import Engine

log = logging.getLogger("rkio.api")


class OpsRoutes:
    def __init__(self, engine: Engine, metrics: ApiMetrics, readiness: Readiness) -> None:
        self.engine = engine
        self.readiness = readiness
        self.metrics = metrics
        self._openapi = build_openapi()

    def routes(self) -> list[Route]:
        return [Route("/", self.root, methods=["GET", "HEAD"]),
                Route("/health", self.health, methods=["GET", "HEAD"]),
                Route("/ready", self.ready, methods=["GET"]),
                Route("/metrics", self.prometheus, methods=["GET"]),
                Route("/rkio/status", self.status, methods=["GET"]),
                Route("/openapi.json", self.openapi, methods=["GET"])]

    async def root(self, request: Request) -> Response:
        return PlainTextResponse("rkio is running")  # Ollama clients probe GET / for liveness

    async def health(self, request: Request) -> Response:
        """Liveness: the process answers. Says nothing about models."""
        return JSONResponse({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """Readiness: send this board traffic. False while shutting down or when no model can be served
        (none in the models directory, no runtime installed for them, all quarantined)."""
        try:
            verdict = self.readiness.verdict()
        except Exception:  # an engine that cannot report is not ready; the detail is for the log only
            log.warning("readiness check failed: the engine could not report its status", exc_info=True)
            return JSONResponse({"status": "not ready", "reason": "the engine cannot report its status"},
                                status_code=503)
        if not verdict.ready:
            return JSONResponse({"status": "not ready", "reason": verdict.reason}, status_code=503)
        return JSONResponse({"status": "ready", "models": verdict.servable, "loaded": verdict.loaded})

    async def prometheus(self, request: Request) -> Response:
        try:
            status = self.engine.status()
        except Exception as exc:  # still report the API's own metrics
            log.warning("engine status unavailable for /metrics: %s", exc)
            status = None
        return PlainTextResponse(self.metrics.render(status), media_type="text/plain; version=0.0.4")

    async def status(self, request: Request) -> Response:
        return JSONResponse(dataclasses.asdict(self.engine.status()))

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(self._openapi)
