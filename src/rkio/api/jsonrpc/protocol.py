"""JSON-RPC 2.0 framing-independent protocol: decoding, request validation, replies, and the error mapping.

Every error a client can see leaves through ``error_object``, the one place where an ``RkioError`` becomes a
JSON-RPC error: the code is chosen by ``RkioError.kind`` (``CODES``), the message is the error's own, and
``data`` carries the structured facts (the offending field, retry_after, the runtime that lacks a feature).
Anything that is not an ``RkioError`` is a bug: the client gets -32603 without a traceback, the log gets it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec

from rkio.api.errors import BadParameter
from rkio.errors import RkioError

log = logging.getLogger("rkio.jsonrpc")

MAX_DEPTH = 64  # deeper JSON is refused: real requests nest 4 levels (cross-attention caches), never 64
JSON_ENCODER = msgspec.json.Encoder()


class ParseError(RkioError):
    kind = "parse_error"


class InvalidRpcRequest(RkioError):
    kind = "invalid_rpc_request"


class MethodNotFound(RkioError):
    kind = "method_not_found"


InvalidParams = BadParameter
"""-32602; ``data.field`` names the offending parameter (the HTTP APIs' 400 with ``param``)."""


class UnknownHandle(RkioError):
    status = 404
    kind = "unknown_handle"

    def __init__(self, message: str, handle_id: object = None) -> None:
        super().__init__(message)
        self.handle_id = handle_id


class StreamExpired(RkioError):
    status = 404
    kind = "stream_expired"

    def __init__(self, stream_id: object) -> None:
        super().__init__("stream session not exists or expired")
        self.stream_id = stream_id


# kind -> code. -32700..-32600 are the specification's; -32000..-32099 are rkio's server errors (docs/rpc.md).
CODES: dict[str, int] = {
    "parse_error": -32700,
    "invalid_rpc_request": -32600,
    "method_not_found": -32601,
    "invalid_request_error": -32602,
    "context_length_exceeded": -32602,
    "internal_error": -32603,
    "runtime_error": -32000,
    "cancelled": -32000,
    "stream_expired": -32001,
    "unknown_handle": -32002,
    "insufficient_memory": -32003,
    "rate_limit_exceeded": -32004,
    "runner_crashed": -32005,
    "unsupported": -32006,
    "authentication_error": -32007,
    "model_not_found": -32008,
    "queue_timeout": -32009,
    "generation_timeout": -32009,
    "shutting_down": -32010,
    "payload_too_large": -32011,
    "load_failed": -32012,
    "model_quarantined": -32012,
}
SERVER_ERROR = -32000
INTERNAL_ERROR = -32603

# attributes of RkioError subclasses that become ``data`` fields (named as the wire calls them)
_DATA_ATTRIBUTES = {
    "param": "field",
    "feature": "feature",
    "runtime": "runtime",
    "handle_id": "handle_id",
    "stream_id": "stream_id",
    "needed": "needed",
    "free": "free",
    "loaded": "loaded",
    "limit": "limit",
    "size": "size",
}


def error_object(exc: BaseException, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-RPC ``error`` member for any exception; ``facts`` join its ``data`` (server state)."""
    if not isinstance(exc, RkioError):
        log.error("unexpected error while serving a JSON-RPC call", exc_info=exc)
        return {
            "code": INTERNAL_ERROR,
            "message": "internal error (the server log has the details)",
            "data": {"kind": "internal_error"},
        }
    data: dict[str, Any] = {"kind": exc.kind}
    for attribute, name in _DATA_ATTRIBUTES.items():
        value = getattr(exc, attribute, None)
        if value is not None:
            data[name] = value
    if exc.retry_after is not None:
        data["retry_after"] = exc.retry_after
    data.update(facts or {})
    return {"code": CODES.get(exc.kind, SERVER_ERROR), "message": exc.message, "data": data}


@dataclass(frozen=True, slots=True)
class Call:
    """One validated request object. ``id`` is absent (``notification``) or a string, number or null."""

    method: str
    params: dict[str, Any] | list[Any] | None
    id: Any
    notification: bool


def decode(raw: bytes) -> Any:
    """Bytes -> JSON value; ParseError for invalid UTF-8, invalid JSON or nesting beyond ``MAX_DEPTH``."""
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ParseError(f"parse error: {exc}") from None
    except RecursionError:
        raise ParseError(f"parse error: JSON nested deeper than {MAX_DEPTH} levels") from None
    if _too_deep(value):
        raise ParseError(f"parse error: JSON nested deeper than {MAX_DEPTH} levels")
    return value


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def request_id_of(obj: Any) -> Any:
    """The id to answer an invalid request with: its own when it is a valid id, else null."""
    if isinstance(obj, dict):
        rid = obj.get("id")
        if rid is None or (isinstance(rid, str | int | float) and not isinstance(rid, bool)):
            return rid
    return None


def parse_call(obj: Any) -> Call:
    """Validate one request object (not a batch); InvalidRpcRequest when it is not one."""
    if not isinstance(obj, dict):
        raise InvalidRpcRequest("invalid request: a request must be a JSON object")
    if obj.get("jsonrpc") != "2.0":
        raise InvalidRpcRequest('invalid request: "jsonrpc" must be "2.0"')
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        raise InvalidRpcRequest('invalid request: "method" must be a non-empty string')
    params = obj.get("params")
    if params is not None and not isinstance(params, dict | list):
        raise InvalidRpcRequest('invalid request: "params" must be an object or an array')
    notification = "id" not in obj
    rid = obj.get("id")
    if not notification and not (
        rid is None or (isinstance(rid, str | int | float) and not isinstance(rid, bool))
    ):
        raise InvalidRpcRequest('invalid request: "id" must be a string, a number or null')
    return Call(method=method, params=params, id=rid, notification=notification)


def result_message(rid: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "result": result}


def error_message(rid: Any, exc: BaseException, facts: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": error_object(exc, facts)}


def notification_message(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}


def encode(message: Any) -> bytes:
    """Compact JSON, UTF-8 (never contains a raw newline, so line framing is safe)."""
    return JSON_ENCODER.encode(message)
