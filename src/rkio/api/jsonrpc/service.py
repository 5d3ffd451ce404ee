"""The JSON-RPC service of ``rkio serve``: one dispatcher, its sessions, and the listeners settings ask for.

Started and stopped by the HTTP app's lifespan, so every transport runs in the server's one event loop
beside the HTTP routes and over the same engine. A sweeper expires idle HTTP/UDP leases
(``rpc_lease_ttl``) and undrained pull streams (``rpc_stream_ttl``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute

from rkio.api.jsonrpc.dispatcher import Dispatcher
from rkio.api.jsonrpc.highlevel import HighLevelMethods
from rkio.api.jsonrpc.leases import LeaseTable
from rkio.api.jsonrpc.methods import RkllmMethods
from rkio.api.jsonrpc.session import Send, Session
from rkio.api.jsonrpc.streams import PullStreams
from rkio.api.jsonrpc.transports.lines import serve_connection
from rkio.api.jsonrpc.transports.sockets import remove_socket, start_tcp, start_unix
from rkio.api.jsonrpc.transports.udp import UdpProtocol, start_udp
from rkio.api.jsonrpc.transports.web import WebTransports
from rkio.config import Settings
from rkio.engine.types import Engine
from rkio.units import parse_size

log = logging.getLogger("rkio.jsonrpc")

NEEDS = re.compile(r"needs (\d+(?:\.\d+)? ?[KMG]?i?B)")
OPEN_TRANSPORTS = frozenset({"unix", "stdio"})  # the socket's file mode is the access control


def unix_socket_path(settings: Settings) -> Path | None:
    """Where the Unix socket listens: ``rpc_unix`` ("auto" = ``<state dir>/rpc.sock``, "off" = nowhere)."""
    value = settings.rpc_unix.strip()
    if value.lower() == "off":
        return None
    if value.lower() in ("", "auto"):
        return settings.state_dir / "rpc.sock"
    return Path(value).expanduser()


class RpcService:
    def __init__(
        self, engine: Engine, settings: Settings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.pulls = PullStreams(settings.rpc_stream_ttl, clock)
        self.shared_leases = LeaseTable(engine, shared=True, ttl=settings.rpc_lease_ttl, clock=clock)
        handlers = {
            **HighLevelMethods(engine).handlers(),
            **RkllmMethods(engine, settings).handlers(),
        }
        self.dispatcher = Dispatcher(
            handlers,
            api_key=settings.api_key,
            max_frame=settings.rpc_max_frame,
            pulls=self.pulls,
            background=self.spawn,
            facts=self.error_facts,
        )
        self.web = WebTransports(self.dispatcher, settings.api_key, self.http_session, self.ws_session)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._servers: list[asyncio.Server] = []
        self._connections: dict[asyncio.StreamWriter, Session] = {}
        self._udp: UdpProtocol | None = None
        self._unix_path: Path | None = None

    def error_facts(self, exc: BaseException) -> dict[str, Any]:
        """For insufficient memory: what is free and what is loaded (what holds the memory)."""
        if getattr(exc, "kind", None) != "insufficient_memory":
            return {}
        status = self.engine.status()
        needed = NEEDS.search(str(exc))  # the planner's figure, as its message prints it (0.1 GiB rounding)
        return {
            "needed": parse_size(needed.group(1).replace(" ", "")) if needed else None,
            "free": status.free_bytes,
            "budget": status.budget_bytes,
            "used": status.used_bytes,
            "loaded": [{"name": m.name, "bytes": m.bytes, "leases": m.leases} for m in status.loaded],
        }

    # ------------------------------------------------------------------------------------------ sessions

    def _authenticated(self, transport: str) -> bool:
        return self.settings.api_key is None or transport in OPEN_TRANSPORTS

    def connection_session(self, transport: str, send: Send) -> Session:
        """A connection with its own lease table (ids 1, 2, ...; closed with the connection)."""
        leases = LeaseTable(self.engine, shared=False, ttl=self.settings.rpc_lease_ttl, clock=self.clock)
        return Session(
            transport,
            leases,
            send,
            authenticated=self._authenticated(transport),
            stream_default=self.settings.rpc_stream_default,
        )

    def http_session(self, key_checked: bool) -> Session:
        return Session("http", self.shared_leases, None, authenticated=key_checked)

    def ws_session(self, send: Send, key_checked: bool) -> Session:
        session = self.connection_session("ws", send)
        session.authenticated = key_checked
        return session

    def udp_session(self, send: Send) -> Session:
        return Session(
            "udp",
            self.shared_leases,
            send,
            authenticated=self._authenticated("udp"),
            stream_default=self.settings.rpc_stream_default,
        )

    def routes(self) -> list[BaseRoute]:
        return self.web.routes()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """A server-owned task (HTTP pull generations), cancelled at shutdown."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        path = unix_socket_path(self.settings)
        if path is not None:
            try:
                self._servers.append(await start_unix(path, self._serve, self.settings.rpc_max_frame))
                self._unix_path = path
            except OSError as exc:
                if self.settings.rpc_unix.strip().lower() not in ("", "auto"):
                    raise  # a socket the user asked for: not serving it is a startup failure
                log.warning("JSON-RPC Unix socket not opened at %s: %s (set --rpc-unix PATH)", path, exc)
        if self.settings.rpc_tcp:
            self._servers.append(
                await start_tcp(self.settings.rpc_tcp, self._serve, self.settings.rpc_max_frame)
            )
        if self.settings.rpc_udp:
            self._udp = await start_udp(self.settings.rpc_udp, self.dispatcher, self.udp_session)
        self.spawn(self._sweep())

    async def sweep_once(self) -> None:
        await self.shared_leases.expire()
        await self.pulls.expire()

    async def _sweep(self) -> None:
        period = max(0.5, min(self.settings.rpc_lease_ttl, self.settings.rpc_stream_ttl) / 4)
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep_once()
            except Exception:
                log.exception("JSON-RPC sweeper failed")

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str
    ) -> None:
        """One Unix/TCP connection, registered so that ``stop`` can end it while the engine still runs."""

        def new_session(name: str, send: Send) -> Session:
            session = self._connections[writer] = self.connection_session(name, send)
            return session

        try:
            await serve_connection(reader, writer, transport, self.dispatcher, new_session)
        finally:
            self._connections.pop(writer, None)

    async def stop(self) -> None:
        """Stop listening, end every connection (cancelling its calls, closing its leases), close the rest;
        called before the engine stops, so every lease is released to a running engine."""
        for server in self._servers:
            server.close()
        for writer, session in list(self._connections.items()):
            await session.close()  # its calls cancelled, its leases closed; the handler then sees the close
            writer.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        if self._unix_path is not None:
            remove_socket(self._unix_path)
        if self._udp is not None:
            await self._udp.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pulls.close()
        await self.shared_leases.close_all()
