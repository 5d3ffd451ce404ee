"""A JSON-RPC service over the fake engine, and a session whose pushed messages are recorded."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fake_engine import FakeEngine

from rkio.api.jsonrpc.service import RpcService
from rkio.api.jsonrpc.session import Session
from rkio.config import Settings


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Peer:
    """A push session: what the server pushed, in order."""

    service: RpcService
    session: Session
    pushed: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 1

    async def raw(self, data: bytes | str) -> Any:
        reply = await self.service.dispatcher.handle(
            data.encode() if isinstance(data, str) else data, self.session
        )
        return None if reply is None else json.loads(reply)

    async def request(self, method: str, params: Any = None, **extra: Any) -> Any:
        message = {"jsonrpc": "2.0", "id": self.next_id, "method": method, **extra}
        if params is not None:
            message["params"] = params
        self.next_id += 1
        return await self.raw(json.dumps(message))

    async def call(self, method: str, params: Any = None) -> Any:
        reply = await self.request(method, params)
        assert "error" not in reply, reply
        return reply["result"]

    async def error(self, method: str, params: Any = None) -> dict[str, Any]:
        reply = await self.request(method, params)
        assert "error" in reply, reply
        return dict(reply["error"])


def make_service(
    engine: FakeEngine, tmp_path: Path, clock: FakeClock | None = None, **settings: Any
) -> RpcService:
    values = {"models_dir": tmp_path / "models", "state_dir": tmp_path / "state", **settings}
    return RpcService(engine, Settings(**values), clock=clock or FakeClock())


def push_peer(service: RpcService, transport: str = "unix") -> Peer:
    peer = Peer(service, None)

    async def send(message: dict[str, Any]) -> None:
        peer.pushed.append(message)

    peer.session = service.connection_session(transport, send)
    return peer


def http_peer(service: RpcService) -> Peer:
    return Peer(service, service.http_session(True))
