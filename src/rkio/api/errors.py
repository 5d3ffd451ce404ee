"""The one place where errors become HTTP: ``RkioError`` -> OpenAI, Ollama or Anthropic JSON, with status
and headers.

OpenAI clients expect ``{"error": {"message", "type", "param", "code"}}``; Ollama clients expect
``{"error": "..."}``; Anthropic clients ``{"type": "error", "error": {"type", "message"}}``. Which one a
request gets depends on its path (``/api/...`` is Ollama, ``/v1/messages...`` Anthropic, everything else
OpenAI-shaped). Errors that happen after a stream started are written as the stream's last event instead
(``stream_error_event``). Anything that is not an ``RkioError`` becomes a 500 in the protocol's shape and its
traceback goes to the log, never to the client.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Literal

import pydantic
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from rkio.errors import InternalError, InvalidRequest, RkioError

log = logging.getLogger("rkio.api")

Protocol = Literal["openai", "ollama", "anthropic"]


class BadParameter(InvalidRequest):
    """An invalid request naming the offending parameter (OpenAI's ``param``)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class RouteNotFound(RkioError):
    status = 404
    kind = "not_found"


class MethodNotAllowed(RkioError):
    status = 405
    kind = "method_not_allowed"


_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
                 405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error"}


# Anthropic's error types (https://docs.anthropic.com/en/api/errors) by HTTP status; 503s are "overloaded"
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                    422: "invalid_request_error", 429: "rate_limit_error", 503: "overloaded_error",
                    529: "overloaded_error"}
ANTHROPIC_PREFIX = "/v1/messages"


def protocol_for_path(path: str) -> Protocol:
    if path.startswith("/api/"):
        return "ollama"
    if path == ANTHROPIC_PREFIX or path.startswith(ANTHROPIC_PREFIX + "/"):
        return "anthropic"
    return "openai"


def from_validation(exc: pydantic.ValidationError) -> BadParameter:
    """A readable 400 from pydantic's errors: ``messages.0.role: Input should be 'user', ...``."""
    parts = []
    first_param: str | None = None
    for item in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body",))
        first_param = first_param or where or None
        parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return BadParameter("invalid request: " + "; ".join(parts), first_param)


def as_rkio_error(exc: BaseException) -> RkioError:
    """Map any exception to the error a client may see; unexpected ones are logged with their traceback."""
    if isinstance(exc, RkioError):
        return exc
    if isinstance(exc, pydantic.ValidationError):
        return from_validation(exc)
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return BadParameter(f"request body is not valid JSON: {exc}")
    if isinstance(exc, HTTPException):
        if exc.status_code == 405:
            return MethodNotAllowed("method not allowed")
        if exc.status_code == 404:
            return RouteNotFound("not found")
        err = RkioError(str(exc.detail))
        err.status = exc.status_code
        return err
    log.error("unexpected error while serving a request", exc_info=exc)
    return InternalError("internal server error (the server log has the details)")


def openai_error_body(err: RkioError) -> dict[str, object]:
    kind = _OPENAI_TYPES.get(err.status, "server_error")
    return {"error": {"message": err.message, "type": kind, "param": getattr(err, "param", None),
                      "code": err.kind}}


def ollama_error_body(err: RkioError) -> dict[str, object]:
    return {"error": err.message}


def anthropic_error_body(err: RkioError) -> dict[str, object]:
    return {"type": "error", "error": {"type": _ANTHROPIC_TYPES.get(err.status, "api_error"),
                                       "message": err.message}}


def error_body(err: RkioError, protocol: Protocol) -> dict[str, object]:
    if protocol == "openai":
        return openai_error_body(err)
    if protocol == "anthropic":
        return anthropic_error_body(err)
    return ollama_error_body(err)


def error_headers(err: RkioError) -> dict[str, str]:
    if err.retry_after is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(err.retry_after)))}


def error_response(err: RkioError, protocol: Protocol) -> Response:
    return JSONResponse(error_body(err, protocol), status_code=err.status, headers=error_headers(err))


def stream_error_event(err: RkioError, protocol: Protocol) -> bytes:
    """The last event of a stream that failed after its headers were sent."""
    if protocol == "openai":
        return b"data: " + json.dumps(openai_error_body(err)).encode() + b"\n\n"
    if protocol == "anthropic":
        return b"event: error\ndata: " + json.dumps(anthropic_error_body(err)).encode() + b"\n\n"
    return json.dumps(ollama_error_body(err)).encode() + b"\n"


async def handle_exception(request: Request, exc: Exception) -> Response:
    """Starlette exception handler: every error leaves in the shape its protocol expects."""
    err = as_rkio_error(exc)
    request.scope.setdefault("state", {})["rkio_error"] = (err.kind, err.message)  # for the access log
    return error_response(err, protocol_for_path(request.url.path))


EXCEPTION_HANDLERS = {RkioError: handle_exception, HTTPException: handle_exception,
                      pydantic.ValidationError: handle_exception}
"""For ``Starlette(exception_handlers=...)``; the catch-all for other exceptions is ``RequestLog``."""
