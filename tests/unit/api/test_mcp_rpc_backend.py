"""``RpcBackend`` (``rkio mcp``'s way to the server) against a scripted peer on a Unix socket in tmp_path:
the requests it sends, how pushed chunks become progress, server errors, and cancel = connection closed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rkio.mcp.backend import ChatCall, GenerateCall, Options, RemoteError, Turn
from rkio.mcp.rpc_backend import RpcBackend

Script = Callable[[dict[str, Any], asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Peer:
    """Answers each connection's first request with ``script``; records requests and closed connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.closed = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = json.loads(await reader.readline())
        self.requests.append(request)
        await self.script(request, reader, writer)
        await reader.read()  # until the client closes its end
        self.closed.set()
        writer.close()


@pytest.fixture
async def peer_at(tmp_path: Path) -> AsyncIterator[Callable[[Script], Awaitable[tuple[Peer, RpcBackend]]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script) -> tuple[Peer, RpcBackend]:
        peer = Peer(script)
        path = tmp_path / f"rpc{len(servers)}.sock"
        servers.append(await asyncio.start_unix_server(peer.serve, path=str(path)))
        return peer, RpcBackend(path)

    yield start
    for server in servers:
        server.close()


def line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


REPLY = {"model": "m", "text": "a b c", "finish_reason": "stop", "usage": {"prompt_tokens": 4,
                                                                             "completion_tokens": 3}}


async def streamed_reply(request: dict[str, Any], reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
    for seq, delta in enumerate(["a", " b c", ""]):
        writer.write(line({"jsonrpc": "2.0", "method": request["method"],
                           "params": {"stream_id": "s1", "seq": seq, "delta": delta, "end": not delta}}))
    writer.write(line({"jsonrpc": "2.0", "id": request["id"], "result": {**REPLY, "stream_id": "s1"}}))
    await writer.drain()


async def test_chat_sends_the_contract_request_and_counts_pushed_chunks(peer_at: Any) -> None:
    peer, backend = await peer_at(streamed_reply)
    seen: list[tuple[int, str | None]] = []

    async def progress(tokens: int, message: str | None) -> None:
        seen.append((tokens, message))

    call = ChatCall("m", (Turn(role="user", content="hi"),), Options(max_tokens=5, top_k=3, stop=("x",)))
    reply = await backend.chat(call, progress)
    assert reply.text == "a b c" and reply.usage.completion_tokens == 3
    assert seen == [(1, None), (2, None)]  # the empty end chunk is not a token
    (request,) = peer.requests
    assert request == {"jsonrpc": "2.0", "id": 1, "method": "rkio.chat",
                       "params": {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                  "stream": True, "max_tokens": 5, "top_k": 3, "stop": ["x"]}}
    await peer.closed.wait()  # one connection per call, closed after the answer


async def test_server_errors_keep_their_message_kind_and_retry_hint(peer_at: Any) -> None:
    async def refuse(request: dict[str, Any], reader: Any, writer: asyncio.StreamWriter) -> None:
        writer.write(line({"jsonrpc": "2.0", "id": request["id"], "error": {
            "code": -32003, "message": "queue is full", "data": {"kind": "rate_limit_exceeded",
                                                                 "retry_after": 2.5}}}))

    _, backend = await peer_at(refuse)
    with pytest.raises(RemoteError) as info:
        await backend.generate(GenerateCall("m", "p", False, Options()), _no_progress)
    assert info.value.message == "queue is full" and info.value.kind == "rate_limit_exceeded"
    assert info.value.retry_after == 2.5


async def test_cancelling_a_call_closes_its_connection(peer_at: Any) -> None:
    started = asyncio.Event()

    async def one_chunk(request: dict[str, Any], reader: Any, writer: asyncio.StreamWriter) -> None:
        writer.write(line({"jsonrpc": "2.0", "method": request["method"],
                           "params": {"stream_id": "s", "seq": 0, "delta": "a", "end": False}}))

    peer, backend = await peer_at(one_chunk)

    async def progress(tokens: int, message: str | None) -> None:
        started.set()

    call = asyncio.ensure_future(backend.chat(ChatCall("m", (Turn(role="user", content="x"),), Options()),
                                              progress))
    await started.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await peer.closed.wait()  # the server sees the connection end: that is its signal to abort


async def test_a_server_that_hangs_up_or_is_not_there_is_a_clear_error(peer_at: Any, tmp_path: Path) -> None:
    async def hang_up(request: dict[str, Any], reader: Any, writer: asyncio.StreamWriter) -> None:
        writer.close()

    _, backend = await peer_at(hang_up)
    with pytest.raises(RemoteError, match="closed the connection before answering"):
        await backend.status()
    with pytest.raises(RemoteError, match=r"cannot reach the rkio server at .*nowhere.sock.*rkio serve"):
        await RpcBackend(tmp_path / "nowhere.sock").list_models()


async def _no_progress(tokens: int, message: str | None) -> None:
    raise AssertionError("no chunks were pushed")
