"""Token chunks pushed past the request's task (rkio.engine.chunk_push) reach the client whole and in order,
also when the client reads slowly and the server's send has to wait."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from fake_engine import FakeEngine

from rkio.api.access import RequestRecord
from rkio.api.direct_body import SCOPE_KEY, send_at_once
from rkio.api.metrics import ApiMetrics
from rkio.api.openai_stream import ChatStreamEncoder
from rkio.api.reply import ReplyParser
from rkio.api.streaming import EngineStream
from rkio.engine.chunk_push import ChunkPush
from rkio.engine.types import GenerationRequest

Message = dict[str, Any]


async def test_a_send_that_need_not_wait_is_done_at_once() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    assert send_at_once(send, {"n": 1}) is None
    assert sent == [{"n": 1}]


async def test_a_send_that_waits_finishes_in_a_task_and_its_error_is_kept() -> None:
    gate = asyncio.Event()
    sent: list[Message] = []

    async def send(message: Message) -> None:
        await gate.wait()  # flow control: the client is not reading
        sent.append(message)

    pending = send_at_once(send, {"n": 1})
    assert pending is not None and not pending.done() and sent == []
    gate.set()
    await pending
    assert sent == [{"n": 1}]

    async def failing(message: Message) -> None:
        raise RuntimeError("connection lost")

    failed = send_at_once(failing, {"n": 2})
    assert failed is not None and failed.done()
    with pytest.raises(RuntimeError, match="connection lost"):
        await failed


async def test_cancelling_a_waiting_send_ends_it() -> None:
    ended = asyncio.Event()

    async def send(message: Message) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    pending = send_at_once(send, {})
    assert pending is not None
    pending.cancel()  # before the task that finishes the send has run at all (a stream closed at once)
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert ended.is_set()


def _chat_stream(engine: FakeEngine, words: int) -> tuple[EngineStream, ChunkPush]:
    push = ChunkPush()
    gen = GenerationRequest(model="qwen", prompt=" ".join(f"w{i}" for i in range(words)), raw=True,
                            request_id="c1")
    encoder = ChatStreamEncoder("c1", 0, "qwen", False, ReplyParser(False, False))
    stream = EngineStream(engine.generate(gen, push), encoder, "openai",
                          RequestRecord(ApiMetrics(), time.perf_counter()), push=push)
    return stream, push


async def _run(stream: EngineStream, send: Any) -> list[str]:
    """The content deltas a client receives from ``stream`` (through the server's ``send``)."""
    bodies: list[bytes] = []

    async def receive() -> Message:
        await asyncio.Event().wait()  # the client never disconnects
        return {}

    async def recording(message: Message) -> None:
        await send(message)
        if message["type"] == "http.response.body":
            bodies.append(message["body"])

    scope = {"type": "http", SCOPE_KEY: recording}
    await stream(scope, receive, recording)
    lines = [line for line in b"".join(bodies).decode().split("\n\n") if line.startswith("data: {")]
    return [json.loads(line[6:])["choices"][0]["delta"].get("content") or "" for line in lines]


async def test_chunks_after_the_first_are_pushed_and_the_reply_is_whole() -> None:
    engine = FakeEngine()

    async def send(message: Message) -> None:
        return None

    stream, push = _chat_stream(engine, 20)
    deltas = await _run(stream, send)
    assert "".join(deltas) == " ".join(f"w{i}" for i in range(20))
    assert engine.pushed == 19  # every chunk after the first, which commits the headers
    assert push.take is None  # withdrawn once the stream ended


async def test_a_slow_client_gets_every_chunk_in_order() -> None:
    engine = FakeEngine()
    waits = 0

    async def send(message: Message) -> None:
        nonlocal waits
        body = message.get("body", b"")
        if b"w3" in body or b"w7" in body:  # the client stops reading for a while, twice
            waits += 1
            readable = asyncio.Event()
            asyncio.get_running_loop().call_soon(readable.set)
            await readable.wait()

    stream, _ = _chat_stream(engine, 12)
    deltas = await _run(stream, send)
    assert "".join(deltas) == " ".join(f"w{i}" for i in range(12))
    assert waits == 2
    assert 0 < engine.pushed < 11  # behind the waiting sends, chunks came through the iterator


async def test_a_client_that_leaves_behind_a_waiting_write_cancels_the_generation() -> None:
    engine = FakeEngine()
    stuck, write_ended = asyncio.Event(), asyncio.Event()

    async def send(message: Message) -> None:
        if b"w3" in message.get("body", b""):  # the client stops reading, then goes away
            stuck.set()
            try:
                await asyncio.Event().wait()
            finally:
                write_ended.set()

    async def receive() -> Message:
        await stuck.wait()
        return {"type": "http.disconnect"}

    stream, push = _chat_stream(engine, 12)
    await stream({"type": "http", SCOPE_KEY: send}, receive, send)
    assert stream.record.outcome == "disconnected"
    assert write_ended.is_set()  # the pushed write that waited was ended, not left behind
    assert engine.cancelled == ["c1"] and push.take is None  # the generation was closed early
