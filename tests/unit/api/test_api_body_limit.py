"""BodyLimit at the ASGI level: the whole 413 is sent before the rest of the body is read away, and only then
does the response end (what lets a client that is still sending read it instead of a TCP reset)."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from rkio.api.auth import BodyLimit
from rkio.api.errors import handle_exception
from rkio.errors import PayloadTooLarge

LIMIT = 100


class Peer:
    """The client side: a body in pieces, and a log of what happened in which order."""

    def __init__(self, pieces: list[bytes], expect_100: bool = False) -> None:
        self.pieces = list(pieces)
        self.events: list[str] = []
        self.sent: list[Message] = []
        self.declared = sum(map(len, pieces))
        self.expect_100 = expect_100

    def scope(self, path: str = "/v1/chat/completions", chunked: bool = False) -> Scope:
        headers = [(b"content-type", b"application/json")]
        if not chunked:
            headers.append((b"content-length", str(self.declared).encode()))
        if self.expect_100:
            headers.append((b"expect", b"100-continue"))
        return {"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b""}

    async def receive(self) -> Message:
        if not self.pieces:
            self.events.append("disconnect")
            return {"type": "http.disconnect"}
        piece = self.pieces.pop(0)
        self.events.append(f"read {len(piece)}")
        return {"type": "http.request", "body": piece, "more_body": bool(self.pieces)}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        more = message.get("more_body", False)
        self.events.append(f"{message['type']}{' (more)' if more else ''}")

    def status_and_body(self) -> tuple[int, dict[str, str], object]:
        start = self.sent[0]
        headers = {k.decode(): v.decode() for k, v in start["headers"]}
        body = b"".join(m.get("body", b"") for m in self.sent[1:])
        return start["status"], headers, json.loads(body)


async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A route that reads its JSON body, behind the app's exception handlers like a real route."""
    request = Request(scope, receive)
    try:
        body = await request.body()
    except PayloadTooLarge as exc:
        await (await handle_exception(request, exc))(scope, receive, send)
        return
    await JSONResponse({"length": len(body)})(scope, receive, send)


async def test_declared_oversize_is_answered_then_the_body_drained_then_closed() -> None:
    peer = Peer([b"x" * 60] * 5)
    await BodyLimit(echo_app, LIMIT)(peer.scope(), peer.receive, peer.send)
    assert peer.events == ["http.response.start", "http.response.body (more)",
                           *["read 60"] * 5, "http.response.body"]
    status, headers, body = peer.status_and_body()
    assert status == 413 and headers["connection"] == "close"
    assert isinstance(body, dict) and "limit of 100 bytes" in body["error"]["message"]


async def test_streamed_oversize_is_refused_when_crossed_and_the_rest_drained() -> None:
    peer = Peer([b"x" * 60] * 5)
    await BodyLimit(echo_app, LIMIT)(peer.scope("/api/chat", chunked=True), peer.receive, peer.send)
    assert peer.events == ["read 60", "read 60", "http.response.start", "http.response.body (more)",
                           "read 60", "read 60", "read 60", "http.response.body"]
    status, headers, body = peer.status_and_body()
    assert status == 413 and headers["connection"] == "close"
    assert isinstance(body, dict) and "limit of 100 bytes" in str(body["error"])  # Ollama's shape


async def test_a_client_waiting_for_100_continue_is_not_waited_for() -> None:
    peer = Peer([b"x" * 200], expect_100=True)
    await BodyLimit(echo_app, LIMIT)(peer.scope(), peer.receive, peer.send)
    assert peer.events == ["http.response.start", "http.response.body"]
    assert peer.status_and_body()[0] == 413


async def test_draining_stops_at_its_byte_bound_and_when_the_client_leaves() -> None:
    limit = BodyLimit(echo_app, LIMIT)
    limit.DRAIN_BYTES = 150
    peer = Peer([b"x" * 60] * 10)
    assert await limit.drain(peer.receive) == 180  # stops once past the bound, not at the body's end
    peer = Peer([])
    assert await limit.drain(peer.receive) == 0 and peer.events == ["disconnect"]


async def test_bodies_within_the_limit_pass_untouched() -> None:
    peer = Peer([b"x" * 50, b"x" * 50])
    await BodyLimit(echo_app, LIMIT)(peer.scope(chunked=True), peer.receive, peer.send)
    status, headers, body = peer.status_and_body()
    assert status == 200 and body == {"length": 100} and "connection" not in headers
