"""JSON-RPC 2.0 conformance of the dispatcher: framing errors, batches, notifications, error codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_engine import FakeEngine
from rpc_helpers import Peer, http_peer, make_service, push_peer

from loop_steps import run_ready_callbacks
from rkio.api.jsonrpc.protocol import MAX_DEPTH


@pytest.fixture
def peer(tmp_path: Path) -> Peer:
    return push_peer(make_service(FakeEngine(), tmp_path))


async def test_parse_error_has_null_id(peer: Peer) -> None:
    reply = await peer.raw('{"jsonrpc": "2.0", "id": 1, "method": ')
    assert reply["id"] is None and reply["error"]["code"] == -32700


async def test_invalid_utf8_is_a_parse_error(peer: Peer) -> None:
    reply = await peer.raw(b'{"jsonrpc": "2.0", "id": 1, "method": "\xff"}')
    assert reply["error"]["code"] == -32700


async def test_deep_nesting_is_refused_not_crashed(peer: Peer) -> None:
    for depth in (MAX_DEPTH + 1, 100_000):
        reply = await peer.raw("[" * depth + "]" * depth)
        assert reply["error"]["code"] == -32700


@pytest.mark.parametrize(
    "message",
    [
        '{"id": 1, "method": "rkio.status"}',  # no jsonrpc
        '{"jsonrpc": "1.0", "id": 1, "method": "rkio.status"}',
        '{"jsonrpc": "2.0", "id": 1, "method": 123}',
        '{"jsonrpc": "2.0", "id": 1, "method": "rkio.status", "params": "x"}',
        '{"jsonrpc": "2.0", "id": {"a": 1}, "method": "rkio.status"}',
        '"just a string"',
    ],
)
async def test_invalid_requests(peer: Peer, message: str) -> None:
    reply = await peer.raw(message)
    assert reply["error"]["code"] == -32600


async def test_invalid_request_keeps_a_valid_id(peer: Peer) -> None:
    reply = await peer.raw('{"jsonrpc": "1.0", "id": 7, "method": "x"}')
    assert reply["id"] == 7


async def test_unknown_method(peer: Peer) -> None:
    error = await peer.error("rkllm.fly")
    assert error["code"] == -32601 and "rkllm.fly" in error["message"]


async def test_empty_batch_is_invalid(peer: Peer) -> None:
    reply = await peer.raw("[]")
    assert reply["error"]["code"] == -32600 and reply["id"] is None


async def test_batch_answers_requests_not_notifications(peer: Peer) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "rkllm.get_constants"},
        {"jsonrpc": "2.0", "method": "rkio.status"},
        {"jsonrpc": "2.0", "id": "b", "method": "nope"},
        5,
    ]
    replies = await peer.raw(json.dumps(batch))
    assert [r["id"] for r in replies] == ["a", "b", None]
    assert "result" in replies[0] and replies[1]["error"]["code"] == -32601
    assert replies[2]["error"]["code"] == -32600


async def test_batch_of_notifications_gets_no_answer(peer: Peer) -> None:
    assert await peer.raw('[{"jsonrpc": "2.0", "method": "rkio.status"}]') is None
    assert await peer.raw('{"jsonrpc": "2.0", "method": "nope"}') is None


async def test_invalid_params_name_the_field(peer: Peer) -> None:
    error = await peer.error("rkio.chat", {"model": "qwen", "messages": [{"role": "robot", "content": "x"}]})
    assert error["code"] == -32602 and error["data"]["field"] == "messages.0.role"
    error = await peer.error("rkio.chat", {"model": "qwen", "messages": [], "max_tokens": "many"})
    assert error["code"] == -32602 and error["data"]["field"] in ("messages", "max_tokens")


async def test_server_errors_carry_structured_data(tmp_path: Path) -> None:
    engine = FakeEngine(queue_full=True)
    peer = push_peer(make_service(engine, tmp_path))
    error = await peer.error("rkio.chat", {"model": "qwen", "messages": [{"role": "user", "content": "hi"}]})
    assert error["code"] == -32004 and error["data"]["retry_after"] == 2.5
    error = await peer.error("rkio.chat", {"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
    assert error["code"] == -32008 and error["data"]["kind"] == "model_not_found"


async def test_internal_errors_have_no_traceback(tmp_path: Path) -> None:
    def broken(request):
        raise ZeroDivisionError("secret detail")

    peer = push_peer(make_service(FakeEngine(script=broken), tmp_path))
    error = await peer.error("rkio.chat", {"model": "qwen", "messages": [{"role": "user", "content": "hi"}]})
    assert error["code"] == -32603
    assert "secret" not in json.dumps(error) and "Traceback" not in json.dumps(error)


async def test_frame_over_the_limit(tmp_path: Path) -> None:
    peer = http_peer(make_service(FakeEngine(), tmp_path, rpc_max_frame=1024))
    reply = await peer.raw(
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "rkio.status", "params": {"pad": "x" * 2000}})
    )
    assert reply["error"]["code"] == -32011


async def test_api_key_required_on_tcp_not_on_unix(tmp_path: Path) -> None:
    service = make_service(FakeEngine(), tmp_path, api_key="sekret")
    unix = push_peer(service, "unix")
    assert "CPU_MASKS" in await unix.call("rkllm.get_constants")
    tcp = push_peer(service, "tcp")
    assert (await tcp.error("rkllm.get_constants"))["code"] == -32007
    assert (await tcp.error("rkio.auth", {"api_key": "wrong"}))["code"] == -32007
    assert (await tcp.call("rkio.auth", {"api_key": "sekret"}))["authenticated"] is True
    assert "CPU_MASKS" in await tcp.call("rkllm.get_constants")
    other = push_peer(service, "tcp")
    assert "INPUT_TYPES" in await other.call("rkllm.get_constants", {"api_key": "sekret"})


async def test_insufficient_memory_says_what_is_needed_free_and_loaded(tmp_path: Path) -> None:
    from rkio.errors import InsufficientMemory

    def refuse(request):
        raise InsufficientMemory("qwen needs 3.0 GiB but only 1.0 GiB of the 8.0 GiB memory budget is free")

    engine = FakeEngine(script=refuse)
    engine.loaded["llama"] = None
    peer = push_peer(make_service(engine, tmp_path))
    error = await peer.error("rkio.chat", {"model": "qwen", "messages": [{"role": "user", "content": "hi"}]})
    assert error["code"] == -32003
    assert error["data"]["needed"] == 3 << 30 and error["data"]["free"] == engine.status().free_bytes
    assert [m["name"] for m in error["data"]["loaded"]] == ["llama"]


async def test_a_session_answers_at_most_max_in_flight_at_once(tmp_path: Path) -> None:
    import asyncio

    from rkio.api.jsonrpc.session import MAX_IN_FLIGHT

    gate = asyncio.Event()
    engine = FakeEngine(script=lambda request: [gate])
    peer = push_peer(make_service(engine, tmp_path))
    chat = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}]}

    async def one() -> None:
        await peer.raw(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "rkio.chat", "params": chat}))

    for _ in range(MAX_IN_FLIGHT):
        assert peer.session.try_admit(one())
    assert not peer.session.try_admit(one())  # UDP drops (and says busy) beyond the limit
    waiting = asyncio.ensure_future(peer.session.admit(one()))  # line transports and WebSocket wait
    await run_ready_callbacks()  # one turn of the ready queue, no timing
    assert not waiting.done()
    gate.set()
    await asyncio.wait_for(waiting, 5)
    await peer.session.drain()
    assert len(engine.completed) == MAX_IN_FLIGHT + 1
