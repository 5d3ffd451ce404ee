"""TCP, UDP, WebSocket and HTTP framing over the one dispatcher (loopback sockets, fake engine)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_engine import FakeEngine
from rpc_helpers import make_service
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from rkio.api.app import create_app
from rkio.api.jsonrpc.client import RpcClient
from rkio.api.jsonrpc.service import RpcService
from rkio.api.jsonrpc.transports.udp import MAX_DATAGRAM
from rkio.config import Settings

HI = {"model": "qwen", "messages": [{"role": "user", "content": "hi there"}]}


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def sockets(tmp_path: Path) -> AsyncIterator[RpcService]:
    svc = make_service(
        FakeEngine(),
        tmp_path,
        rpc_unix="off",
        rpc_tcp=f"127.0.0.1:{free_port()}",
        rpc_udp=f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
        api_key="k",
    )
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()


def address(value: str | None) -> tuple[str, int]:
    assert value is not None
    host, port = value.rsplit(":", 1)
    return host, int(port)


async def test_tcp_needs_the_key_then_streams(sockets: RpcService) -> None:
    async with await RpcClient.connect_tcp(*address(sockets.settings.rpc_tcp)) as client:
        with pytest.raises(Exception) as caught:
            await client.call("rkio.chat", HI)
        assert getattr(caught.value, "code", None) == -32007
        await client.call("rkio.auth", {"api_key": "k"})
        chunks = [c async for c in client.stream("rkio.chat", HI)]
        assert "".join(c["delta"] for c in chunks) == "hi there" == client.last_result["text"]


class Udp(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[Any] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.put_nowait(json.loads(data))


async def test_udp_call_and_stream(sockets: RpcService) -> None:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(Udp, remote_addr=address(sockets.settings.rpc_udp))
    try:
        transport.sendto(b'{"jsonrpc":"2.0","id":1,"method":"rkllm_get_constants","params":{}}')
        assert (await asyncio.wait_for(peer.received.get(), 5))["error"]["code"] == -32007
        transport.sendto(
            json.dumps(
                {"jsonrpc": "2.0", "id": 2, "method": "rkllm_get_constants", "params": {"api_key": "k"}}
            ).encode()
        )
        assert "CPU_MASKS" in (await asyncio.wait_for(peer.received.get(), 5))["result"]
        # the address stays authenticated; a stream pushes notifications to it, then the response
        transport.sendto(
            json.dumps(
                {"jsonrpc": "2.0", "id": 3, "method": "rkio.chat", "params": {**HI, "stream": True}}
            ).encode()
        )
        messages = []
        while not messages or "id" not in messages[-1]:
            messages.append(await asyncio.wait_for(peer.received.get(), 5))
        assert "".join(m["params"]["delta"] for m in messages[:-1]) == "hi there"
        assert messages[-1]["result"]["text"] == "hi there"
        handle = await udp_call(transport, peer, 4, "rkllm.init", {"model_path": "qwen"})
        assert handle["result"]["handle_id"] > 1000  # unguessable over UDP
    finally:
        transport.close()


async def udp_call(transport: Any, peer: Udp, rid: int, method: str, params: Any) -> Any:
    transport.sendto(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}).encode())
    return await asyncio.wait_for(peer.received.get(), 5)


async def test_udp_answer_too_large_for_a_datagram(sockets: RpcService) -> None:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(Udp, remote_addr=address(sockets.settings.rpc_udp))
    try:
        big = {**HI, "api_key": "k", "messages": [{"role": "user", "content": "w " * (MAX_DATAGRAM // 2)}]}
        transport.sendto(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "rkio.chat", "params": big}).encode()[
                :MAX_DATAGRAM
            ]
        )  # truncated: a parse error comes back
        assert (await asyncio.wait_for(peer.received.get(), 5))["error"]["code"] == -32700
    finally:
        transport.close()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(models_dir=tmp_path, state_dir=tmp_path, api_key="k")
    with TestClient(create_app(FakeEngine(), settings, manage_engine=False)) as client:  # one event loop
        yield client


def test_http_rpc_with_key_header_and_pull(web: TestClient) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "rkio.chat", "params": HI}
    refused = web.post("/rpc", json=body)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == -32007
    headers = {"Authorization": "Bearer k"}
    assert web.post("/rpc", json=body, headers=headers).json()["result"]["text"] == "hi there"
    stream = web.post("/rpc", json={**body, "params": {**HI, "stream": True}}, headers=headers).json()[
        "result"
    ]
    chunks: list[dict[str, Any]] = []
    for _ in range(50):
        pulled = web.post(
            "/rpc",
            headers=headers,
            json={
                "jsonrpc": "2.0",
                "id": 2,
                "method": "rkio.chat",
                "params": {"stream_id": stream["stream_id"]},
            },
        ).json()
        chunks += pulled["result"]["chunks"]
        if chunks and chunks[-1]["end"]:
            break
    assert "".join(c["delta"] for c in chunks) == "hi there"
    notification = web.post("/rpc", headers=headers, json={"jsonrpc": "2.0", "method": "rkio.status"})
    assert notification.status_code == 204
    assert web.post("/rpc", headers=headers, content=b"{oops").json()["error"]["code"] == -32700


def test_websocket_push_and_key(web: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, web.websocket_connect("/ws") as ws:
        ws.receive_text()
    assert refused.value.code == 1008
    with web.websocket_connect("/ws", headers={"X-API-Key": "k"}) as ws:
        ws.send_text(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "rkio.chat", "params": {**HI, "stream": True}})
        )
        messages = [json.loads(ws.receive_text())]
        while "id" not in messages[-1]:
            messages.append(json.loads(ws.receive_text()))
        assert [m["method"] for m in messages[:-1]] == ["rkio.chat"] * (len(messages) - 1)
        assert messages[-1]["result"]["text"] == "hi there"
        ws.send_text("not json")
        assert json.loads(ws.receive_text())["error"]["code"] == -32700


async def test_http_body_limit_is_the_frame_limit(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path, state_dir=tmp_path, max_body_bytes=100, rpc_max_frame=1 << 20)
    app = create_app(FakeEngine(), settings, manage_engine=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        body = {"jsonrpc": "2.0", "id": 1, "method": "rkio.status", "params": {"pad": "x" * 1000}}
        assert (await client.post("/rpc", json=body)).json()["result"]["npu_lanes"] == 1
        body["params"] = {"pad": "x" * (2 << 20)}
        assert (await client.post("/rpc", json=body)).json()["error"]["code"] == -32011
