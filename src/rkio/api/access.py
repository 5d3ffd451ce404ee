"""Per-request bookkeeping: one structured log line per request, request metrics, and the catch-all that turns
an unexpected exception into a 500 in the protocol's shape (the traceback goes to the log only)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rkio.api.errors import as_rkio_error, error_response, protocol_for_path
from rkio.api.metrics import ApiMetrics
from rkio.engine.types import Done
from rkio.errors import ShuttingDown

log = logging.getLogger("rkio.access")

RECORD_KEY = "rkio_record"


@dataclass(slots=True)
class RequestRecord:
    """What one request did; filled by the routes and the stream driver, reported by ``RequestLog``."""

    metrics: ApiMetrics
    started: float
    model: str = ""
    stream: bool = False
    outcome: str = "ok"
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_s: float | None = None
    queue_s: float | None = None
    load_s: float | None = None
    last_chunk: float | None = None
    sampling: str | None = None  # whose sampling the run used (rkio.api.run_report)
    not_applied: tuple[str, ...] = ()  # request settings the runtime left out

    def chunk(self, now: float, n_tokens: int) -> None:
        """A TokenChunk arrived (``n_tokens`` tokens in it)."""
        if self.last_chunk is None:
            self.ttft_s = now - self.started
            self.metrics.ttft.observe(self.ttft_s, self.model)
        elif n_tokens:
            gap = (now - self.last_chunk) / n_tokens
            for _ in range(n_tokens):
                self.metrics.token_gap.observe(gap, self.model)
        self.last_chunk = now

    def relayed(self, now: float, gaps: Sequence[float]) -> None:
        """Tokens the runner wrote to the client itself (``rkio.engine.chunk_push``), by their gaps."""
        observe, model = self.metrics.token_gap.observe, self.model
        for gap in gaps:
            observe(gap, model)
        self.metrics.relayed_tokens.inc(model, by=len(gaps))
        self.last_chunk = now

    def done(self, done: Done) -> None:
        self.prompt_tokens = done.usage.prompt_tokens
        self.completion_tokens = done.usage.completion_tokens
        self.queue_s = done.timings.queue_s
        self.load_s = done.timings.load_s
        self.metrics.prompt_tokens.inc(self.model, by=done.usage.prompt_tokens)
        self.metrics.completion_tokens.inc(self.model, by=done.usage.completion_tokens)
        self.metrics.queue_wait.observe(done.timings.queue_s, self.model)
        if done.timings.load_s is not None:
            self.metrics.load_time.observe(done.timings.load_s, self.model)


def record_of(scope: Scope) -> RequestRecord:
    """The request's record (a detached one when ``RequestLog`` is not installed, e.g. a bare router)."""
    record = scope.get("state", {}).get(RECORD_KEY)
    if isinstance(record, RequestRecord):
        return record
    record = RequestRecord(ApiMetrics(), time.perf_counter())
    scope.setdefault("state", {})[RECORD_KEY] = record
    return record


class RequestLog:
    """Outermost middleware (inside Starlette's own error middleware)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord(self.metrics, time.perf_counter())
        scope.setdefault("state", {})[RECORD_KEY] = record
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # the catch-all: never a traceback to the client
            err = as_rkio_error(exc)
            record.outcome, record.error = f"error:{err.kind}", err.message
            if status == 0:
                await error_response(err, protocol_for_path(scope["path"]))(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            # uvicorn cancels the requests still running when the stop grace is over; one whose response has
            # not started (queued, loading) still gets an answer in its protocol's shape, not a plain-text 500
            if status == 0:
                err = ShuttingDown("server is shutting down")
                record.outcome, record.error = f"error:{err.kind}", err.message
                answer = error_response(err, protocol_for_path(scope["path"]))
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(answer(scope, receive, send_wrapper), 1)
            raise
        finally:
            self._report(scope, record, status)

    def _report(self, scope: Scope, record: RequestRecord, status: int) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", None) or "unmatched"
        elapsed = time.perf_counter() - record.started
        error = scope.get("state", {}).get("rkio_error")
        if record.outcome == "ok" and error is not None:
            record.outcome = f"error:{error[0]}"
            record.error = error[1]
        self.metrics.requests.inc(endpoint, str(status or 499))
        self.metrics.duration.observe(elapsed, endpoint)
        if record.outcome == "disconnected":
            self.metrics.disconnects.inc(endpoint)
        fields: dict[str, Any] = {"method": scope.get("method"), "path": scope.get("path"), "status": status,
                                  "duration_ms": round(elapsed * 1000, 1), "outcome": record.outcome}
        if record.model:
            fields.update(model=record.model, stream=record.stream, prompt_tokens=record.prompt_tokens,
                          completion_tokens=record.completion_tokens,
                          ttft_ms=None if record.ttft_s is None else round(record.ttft_s * 1000, 1),
                          queue_ms=None if record.queue_s is None else round(record.queue_s * 1000, 1),
                          load_ms=None if record.load_s is None else round(record.load_s * 1000, 1),
                          sampling=record.sampling,
                          not_applied=",".join(record.not_applied) if record.not_applied else None)
        if record.error:
            fields["error"] = repr(record.error)
        log.info(" ".join(f"{k}={v}" for k, v in fields.items() if v is not None))
