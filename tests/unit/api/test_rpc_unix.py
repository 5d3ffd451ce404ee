"""The Unix socket transport end to end with the bundled client, over the fake engine."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from rpc_helpers import make_service

from rkio.api.jsonrpc.client import RpcCallError, RpcClient
from rkio.api.jsonrpc.service import RpcService

HI = [{"role": "user", "content": "hello there world"}]


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def service(engine: FakeEngine, tmp_path: Path) -> AsyncIterator[RpcService]:
    sock = Path("/tmp") / f"rkio-test-{os.getpid()}-{id(tmp_path)}.sock"  # AF_UNIX paths are short
    svc = make_service(engine, tmp_path, rpc_unix=str(sock))
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


def sock_path(service: RpcService) -> Path:
    return Path(service.settings.rpc_unix)


async def test_socket_is_private_and_removed_at_stop(engine: FakeEngine, tmp_path: Path) -> None:
    svc = make_service(engine, tmp_path)  # default path: <state dir>/rpc.sock
    await svc.start()
    path = tmp_path / "state" / "rpc.sock"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await svc.stop()
    assert not path.exists()


async def test_chat_list_models_status(service: RpcService) -> None:
    async with await RpcClient.connect_unix(sock_path(service)) as client:
        reply = await client.call("rkio.chat", {"model": "qwen", "messages": HI})
        assert reply["text"] == "hello there world" and reply["finish_reason"] == "stop"
        assert reply["usage"] == {"prompt_tokens": 3, "completion_tokens": 3}
        models = await client.call("rkio.list_models")
        assert [m["name"] for m in models["models"]] == ["qwen", "llama"]
        assert models["models"][1]["format"] == "gguf"
        status = await client.call("rkio.status")
        assert status["npu_lanes"] == 1
        with pytest.raises(RpcCallError) as caught:
            await client.call("rkio.chat", {"model": "qwen"})
        assert caught.value.code == -32602


async def test_chat_push_stream(service: RpcService) -> None:
    async with await RpcClient.connect_unix(sock_path(service)) as client:
        chunks = [c async for c in client.stream("rkio.chat", {"model": "qwen", "messages": HI})]
        assert "".join(c["delta"] for c in chunks) == "hello there world"
        assert [c["seq"] for c in chunks] == list(range(len(chunks)))
        assert chunks[-1]["end"] is True and chunks[-1]["finish_reason"] == "stop"
        assert client.last_result["text"] == "hello there world"
        assert client.last_result["stream_id"] == chunks[0]["stream_id"]


async def test_raw_lines_batches_and_bad_frames(service: RpcService) -> None:
    reader, writer = await asyncio.open_unix_connection(str(sock_path(service)))
    writer.write(b'{"jsonrpc":"2.0","id":1,"method":"rkllm.get_constants"}\n not json\n')
    await writer.drain()
    first = json.loads(await reader.readline())
    second = json.loads(await reader.readline())
    replies = {r["id"]: r for r in (first, second)}
    assert replies[1]["result"]["LLM_CALL_STATES"]["RKLLM_RUN_ERROR"] == 3
    assert replies[None]["error"]["code"] == -32700
    writer.write(b'{"jsonrpc":"2.0","id":2,"method":"rkio.status"}')  # no newline, then EOF
    writer.write_eof()
    assert json.loads(await reader.readline())["id"] == 2
    writer.close()


async def test_oversized_line_closes_the_connection_cleanly(engine: FakeEngine, tmp_path: Path) -> None:
    sock = Path("/tmp") / f"rkio-test-big-{os.getpid()}.sock"
    svc = make_service(engine, tmp_path, rpc_unix=str(sock), rpc_max_frame=4096)
    await svc.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b"[" + b"1," * 5000 + b"1]\n")
        await writer.drain()
        reply = json.loads(await reader.readline())
        assert reply["error"]["code"] == -32011
        assert await reader.read() == b""  # closed by the server
        writer.close()
        async with await RpcClient.connect_unix(sock) as client:  # the server still serves
            assert "INPUT_TYPES" in await client.call("rkllm.get_constants")
    finally:
        await svc.stop()


async def test_disconnect_cancels_running_calls(engine: FakeEngine, service: RpcService) -> None:
    gate = asyncio.Event()
    engine.script = lambda request: [gate]
    _, writer = await asyncio.open_unix_connection(str(sock_path(service)))
    writer.write(
        json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "rkio.chat", "params": {"model": "qwen", "messages": HI}}
        ).encode()
        + b"\n"
    )
    await writer.drain()
    await asyncio.wait_for(engine.request_seen.wait(), 10)
    writer.close()
    await asyncio.wait_for(engine.cancel_seen.wait(), 10)
    assert engine.cancelled == [engine.requests[0].request_id]


async def test_default_socket_that_cannot_open_does_not_stop_the_server(
    engine: FakeEngine, tmp_path: Path
) -> None:
    deep = tmp_path / ("d" * 100)  # AF_UNIX paths are limited to 108 bytes
    svc = make_service(engine, deep)
    await svc.start()  # the HTTP side still serves; a warning says why the socket is missing
    await svc.stop()
    explicit = make_service(engine, deep, rpc_unix=str(deep / "state" / "rpc.sock"))
    with pytest.raises(OSError):
        await explicit.start()
    await explicit.stop()


async def test_a_live_socket_is_never_taken_over(
    service: RpcService, engine: FakeEngine, tmp_path: Path
) -> None:
    second = make_service(engine, tmp_path / "second", rpc_unix=service.settings.rpc_unix)
    with pytest.raises(OSError, match="another server is listening"):
        await second.start()
    await second.stop()
    async with await RpcClient.connect_unix(sock_path(service)) as client:  # the first still serves
        assert "INPUT_TYPES" in await client.call("rkllm.get_constants")


async def test_end_of_input_finishes_the_calls_already_sent(engine: FakeEngine, service: RpcService) -> None:
    reader, writer = await asyncio.open_unix_connection(str(sock_path(service)))
    request = {"jsonrpc": "2.0", "id": 5, "method": "rkio.chat", "params": {"model": "qwen", "messages": HI}}
    writer.write(json.dumps(request).encode() + b"\n")
    writer.write_eof()  # like `printf ... | socat`: everything is sent, the answer is still wanted
    reply = json.loads(await reader.readline())
    assert reply["id"] == 5 and reply["result"]["text"] == "hello there world"
    assert await reader.read() == b""
    writer.close()


async def test_stop_ends_open_connections_and_releases_their_leases(
    engine: FakeEngine, tmp_path: Path
) -> None:
    sock = Path("/tmp") / f"rkio-test-stop-{os.getpid()}.sock"
    svc = make_service(engine, tmp_path, rpc_unix=str(sock))
    await svc.start()
    client = await RpcClient.connect_unix(sock)
    await client.call("rkllm.init", {"model_path": "qwen"})
    assert len(engine.leases) == 1
    await svc.stop()  # before the engine stops: the lease goes back to a running engine
    assert engine.leases == {} and len(engine.closed_leases) == 1
    with pytest.raises(ConnectionResetError):
        await client.call("rkio.status")
    await client.close()
