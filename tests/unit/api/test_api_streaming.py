"""Stream mechanics at the ASGI level: disconnect -> engine iterator closed, late header commit, queue/loading
comments, heartbeats. The app is called directly so the test controls exactly when the client leaves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from fake_engine import FakeEngine, Step, done, token_chunks
from starlette.applications import Starlette

from loop_steps import run_ready_callbacks
from rkio.api.app import create_app
from rkio.config import Settings
from rkio.engine.types import Loading, Queued

Message = dict[str, Any]


async def call(
    app: Starlette,
    path: str,
    payload: dict[str, Any],
    *,
    gone: asyncio.Event | None = None,
    on_send: Callable[[Message, list[Message]], None] | None = None,
) -> list[Message]:
    """Run one request; the client disconnects when ``gone`` is set (never, if None)."""
    body = json.dumps(payload).encode()
    sent: list[Message] = []
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await (gone or asyncio.Event()).wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if on_send is not None:
            on_send(message, sent)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 5000),
        "server": ("rkio.test", 80),
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return sent


def body_of(sent: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


CHAT = {"model": "qwen", "messages": [{"role": "user", "content": "x"}]}


async def test_disconnect_mid_stream_closes_engine_iterator() -> None:
    for path, payload in (("/v1/chat/completions", {**CHAT, "stream": True}), ("/api/chat", CHAT)):
        never = asyncio.Event()
        engine = FakeEngine(script=lambda req, g=never: [Queued(0), *token_chunks(["a", "b"]), g, done(1, 3)])
        app = create_app(engine, Settings(), manage_engine=False)
        gone = asyncio.Event()

        def leave_after_b(message: Message, sent: list[Message], gone: asyncio.Event = gone) -> None:
            if b'"b"' in message.get("body", b""):
                gone.set()

        sent = await call(app, path, payload, gone=gone, on_send=leave_after_b)
        assert sent[0]["status"] == 200
        assert engine.cancelled == [engine.requests[0].request_id] and engine.completed == []
        assert app.state.metrics.disconnects.values  # counted


async def test_disconnect_while_waiting_non_streaming_cancels() -> None:
    gate, gone = asyncio.Event(), asyncio.Event()

    def leave_once_queued(req: object) -> list[Step]:
        gone.set()  # the client leaves while the request waits in the queue
        return [Queued(3), gate, *token_chunks(["a"]), done(1, 1)]

    engine = FakeEngine(script=leave_once_queued)
    app = create_app(engine, Settings(), manage_engine=False)
    await call(app, "/v1/chat/completions", CHAT, gone=gone)
    assert engine.cancelled == [engine.requests[0].request_id]


async def test_sse_commits_late_and_reports_queue_and_loading() -> None:
    gates = [asyncio.Event(), asyncio.Event()]
    engine = FakeEngine(
        script=lambda req: [
            Queued(2),
            gates[0],
            Queued(0),
            Loading("qwen"),
            gates[1],
            *token_chunks(["hi"]),
            done(1, 1, load_s=1.5),
        ]
    )
    app = create_app(engine, Settings(), manage_engine=False, commit_after=0.0)

    def release(message: Message, sent: list[Message]) -> None:
        data = message.get("body", b"")
        if data == b": queued position=2\n\n":
            gates[0].set()
        if data == b": loading\n\n":
            gates[1].set()

    sent = await call(app, "/v1/chat/completions", {**CHAT, "stream": True}, on_send=release)
    text = body_of(sent).decode()
    assert sent[0]["status"] == 200
    assert text.index(": queued position=2") < text.index(": queued position=0") < text.index(": loading")
    assert text.index(": loading") < text.index('"hi"') and text.endswith("data: [DONE]\n\n")
    assert engine.completed


async def test_a_stream_committed_while_queued_carries_the_run_report_headers() -> None:
    gate = asyncio.Event()
    engine = FakeEngine(script=lambda req: [Queued(0), gate, *token_chunks(["x"]), done(1, 1)])
    app = create_app(engine, Settings(), manage_engine=False, commit_after=0.0)

    def release(message: Message, sent: list[Message]) -> None:
        if message.get("body") == b": queued position=0\n\n":
            gate.set()

    payload = {**CHAT, "stream": True, "temperature": 0.4}
    sent = await call(app, "/v1/chat/completions", payload, on_send=release)
    headers = dict(sent[0]["headers"])
    assert sent[1]["body"] == b": queued position=0\n\n"  # committed before the first token
    assert (headers[b"x-rkio-sampling"], headers[b"x-rkio-not-applied"]) == (b"loaded", b"sampling")


async def test_heartbeats_until_the_first_token() -> None:
    gate = asyncio.Event()
    engine = FakeEngine(script=lambda req: [Queued(0), gate, *token_chunks(["x"]), done(1, 1)])
    app = create_app(engine, Settings(), manage_engine=False, commit_after=0.0, heartbeat=0.0)

    def release_after_three(message: Message, sent: list[Message]) -> None:
        if sum(m.get("body") == b": waiting\n\n" for m in sent) >= 3:
            gate.set()

    sent = await call(app, "/v1/chat/completions", {**CHAT, "stream": True}, on_send=release_after_three)
    assert body_of(sent).count(b": waiting\n\n") == 3


async def test_ndjson_sends_nothing_before_the_first_token() -> None:
    gate = asyncio.Event()
    engine = FakeEngine(
        script=lambda req: [Queued(5), Loading("qwen"), gate, *token_chunks(["x"]), done(1, 1)]
    )
    app = create_app(engine, Settings(), manage_engine=False, commit_after=0.0, heartbeat=0.0)
    task = asyncio.ensure_future(call(app, "/api/chat", CHAT))
    await run_ready_callbacks(50)
    assert not task.done()
    gate.set()
    sent = await task
    lines = body_of(sent).decode().splitlines()
    assert json.loads(lines[0])["message"]["content"] == "x" and json.loads(lines[-1])["done"]


async def test_engine_stream_ending_without_done_is_reported_not_silent() -> None:
    engine = FakeEngine(script=lambda req: [*token_chunks(["half"])])
    app = create_app(engine, Settings(), manage_engine=False)
    sent = await call(app, "/api/generate", {"model": "qwen", "prompt": "p"})
    last = json.loads(body_of(sent).decode().splitlines()[-1])
    assert "without a result" in last["error"]
    assert sent[-1]["more_body"] is False
