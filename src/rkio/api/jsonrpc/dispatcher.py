"""The one dispatcher every transport feeds: bytes in, bytes out (or nothing, for notifications).

It decodes, answers batches, resolves the three spellings of a method name, checks the API key, picks the
streaming form and turns every exception into a JSON-RPC error through ``protocol.error_object``.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from rkio.api.jsonrpc.leases import Lease
from rkio.api.jsonrpc.params import canonical_method, named_params
from rkio.api.jsonrpc.protocol import (
    Call,
    InvalidParams,
    InvalidRpcRequest,
    MethodNotFound,
    decode,
    encode,
    error_message,
    parse_call,
    request_id_of,
    result_message,
)
from rkio.api.jsonrpc.session import Session
from rkio.api.jsonrpc.streams import PullStreams
from rkio.errors import PayloadTooLarge, RkioError, RunnerCrashed, Unauthorized

StreamForm = Literal["none", "push", "callbacks", "pull"]
NO_REPLY: Any = object()
"""A handler's result when it has answered the request itself (nano's callbacks end with the answer)."""

STREAMING_METHODS = frozenset({"rkllm.run", "rkllm.run_async", "rkio.chat", "rkio.generate"})


@dataclass(slots=True)
class CallContext:
    session: Session
    call: Call
    method: str  # canonical name
    params: dict[str, Any]
    pulls: PullStreams
    background: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]  # server-owned tasks (HTTP pull)

    def lease(self) -> tuple[Lease, dict[str, Any]]:
        """The call's handle (``handle_id``, or the connection's only one) and its other params."""
        params = dict(self.params)
        lease = self.session.leases.get(params.pop("handle_id", None))
        if lease.dead is not None:
            raise RunnerCrashed(f"handle {lease.handle_id} is dead: {lease.dead}; "
                                "call rkllm.destroy and rkllm.init again")
        return lease, params

    def stream_form(self, stream: Any, *, asynchronous: bool = False) -> StreamForm:
        """How this call streams: ``stream`` as sent, the transport, and the server's default."""
        push = self.session.send is not None
        if stream is None:
            if push and self.session.stream_default == "callbacks":
                return "callbacks"
            stream = asynchronous
        if stream is False:
            return ("push" if push else "pull") if asynchronous else "none"
        if stream is True:
            return "push" if push else "pull"
        if stream == "callbacks":
            if not push:
                raise InvalidParams(
                    'stream "callbacks" needs a transport that can push (not HTTP); '
                    "use stream: true to pull chunks",
                    "stream",
                )
            return "callbacks"
        raise InvalidParams('stream must be true, false or "callbacks"', "stream")


Handler = Callable[[CallContext], Awaitable[Any]]


class Dispatcher:
    def __init__(
        self,
        handlers: dict[str, Handler],
        *,
        api_key: str | None,
        max_frame: int,
        pulls: PullStreams,
        background: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        facts: Callable[[BaseException], dict[str, Any]] | None = None,
    ) -> None:
        self.handlers = {**handlers, "rkio.auth": self.auth}
        self.facts = facts  # server state an error's data should carry (memory figures)
        self.api_key = api_key
        self.max_frame = max_frame
        self.pulls = pulls
        self.background = background

    async def auth(self, ctx: CallContext) -> dict[str, Any]:
        """``rkio.auth {api_key}``: authenticate the session (TCP, UDP peers) for its later calls."""
        key = ctx.params.get("api_key")
        if not isinstance(key, str):
            raise InvalidParams("api_key (a string) is required", "api_key")
        if self.api_key is not None and not self.key_matches(key):
            raise Unauthorized("invalid API key")
        ctx.session.authenticated = True
        return {"authenticated": True, "required": self.api_key is not None}

    def key_matches(self, key: object) -> bool:
        return (
            self.api_key is not None
            and isinstance(key, str)
            and hmac.compare_digest(key.encode(), self.api_key.encode())
        )

    async def handle(self, raw: bytes, session: Session) -> bytes | None:
        """Answer one frame: a request, a notification or a batch."""
        if len(raw) > self.max_frame:
            err = PayloadTooLarge(f"message of {len(raw)} bytes is larger than the limit of {self.max_frame}")
            return encode(error_message(None, err))
        try:
            message = decode(raw)
        except RkioError as exc:
            return encode(error_message(None, exc))
        if isinstance(message, list):
            if not message:
                return encode(error_message(None, InvalidRpcRequest("invalid request: empty batch")))
            replies = await asyncio.gather(*(self.handle_object(item, session) for item in message))
            answered = [r for r in replies if r is not None]
            return encode(answered) if answered else None
        reply = await self.handle_object(message, session)
        return None if reply is None else encode(reply)

    async def handle_object(self, obj: Any, session: Session) -> dict[str, Any] | None:
        try:
            call = parse_call(obj)
        except RkioError as exc:
            return error_message(request_id_of(obj), exc)
        try:
            result = await self._call(call, session)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if call.notification:
                return None
            return error_message(call.id, exc, self.facts(exc) if self.facts is not None else None)
        if call.notification or result is NO_REPLY:
            return None
        return result_message(call.id, result)

    async def _call(self, call: Call, session: Session) -> Any:
        method = canonical_method(call.method)
        handler = self.handlers.get(method) if method is not None else None
        if method is None or handler is None:
            raise MethodNotFound(f"method not found: {call.method}")
        params = named_params(method, call.params)
        if "api_key" in params and method != "rkio.auth":
            params = dict(params)
            if self.key_matches(params.pop("api_key")):
                session.authenticated = True
        if not session.authenticated and method != "rkio.auth":
            raise Unauthorized(
                "this transport needs the API key: call rkio.auth {api_key} first or send an api_key param"
            )
        return await handler(CallContext(session, call, method, params, self.pulls, self.background))
