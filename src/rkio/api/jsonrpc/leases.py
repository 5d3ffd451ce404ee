"""Handle ids as leases: an rkllm ``LLMHandle`` stays in its runner; the client holds an integer for a lease.

A connection (Unix socket, TCP, stdio, WebSocket) owns a ``LeaseTable`` of its own: ids count from 1, are
meaningless on any other connection, and every lease closes with the connection. HTTP and UDP have no
connection, so they share one table whose ids are random integers below 2**53 (unguessable, and exact in
JavaScript numbers) and whose leases expire after ``ttl`` seconds without a call.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rkio.api.jsonrpc.protocol import InvalidParams, UnknownHandle
from rkio.api.jsonrpc.streams import Generation
from rkio.engine.types import Engine
from rkio.errors import Busy, RkioError, Unsupported
from rkio.runtime.base import ChatTemplateOverride, CrossAttnParams, Feature, FunctionTools

log = logging.getLogger("rkio.jsonrpc")

MAX_ID = 2**53 - 1
MAX_CONNECTION_LEASES = 64  # one client's handles
MAX_SHARED_LEASES = 4096  # every HTTP/UDP client's together (each expires after ttl idle)


@dataclass(slots=True)
class LeaseState:
    """The per-lease runtime state the RPC layer keeps and sends with each run (never shared)."""

    chat_template: ChatTemplateOverride | None = None
    function_tools: FunctionTools | None = None
    cross_attn: CrossAttnParams | None = None
    prompt_cache_path: str | None = None
    loras: dict[str, str] = field(default_factory=dict)  # name -> path, loaded through this lease
    keeps_history: bool = False


@dataclass(slots=True)
class Lease:
    handle_id: int
    engine_lease: str
    model: str
    runtime: str
    features: frozenset[str]
    load: dict[str, Any]
    last_used: float
    state: LeaseState = field(default_factory=LeaseState)
    running: Generation | None = None  # the lease's latest run (in flight while .running)
    dead: str | None = None  # why the lease can no longer be used (its runner crashed)

    @property
    def is_running(self) -> bool:
        return self.running is not None and self.running.running

    def require(self, feature: Feature) -> None:
        """Unsupported ("X is not supported by runtime Y", -32006) when the lease's runtime lacks it."""
        if feature not in self.features:
            raise Unsupported(feature.value, self.runtime)


class LeaseTable:
    def __init__(self, engine: Engine, *, shared: bool, ttl: float, clock: Callable[[], float]) -> None:
        self.engine = engine
        self.shared = shared
        self.ttl = ttl
        self.clock = clock
        self._leases: dict[int, Lease] = {}
        self._next = 1

    def __len__(self) -> int:
        return len(self._leases)

    def new_id(self) -> int:
        limit = MAX_SHARED_LEASES if self.shared else MAX_CONNECTION_LEASES
        if len(self._leases) >= limit:
            raise Busy(f"too many open handles (at most {limit}); destroy one first", retry_after=1.0)
        if not self.shared:
            handle_id, self._next = self._next, self._next + 1
            return handle_id
        while True:
            handle_id = secrets.randbelow(MAX_ID) + 1
            if handle_id not in self._leases:
                return handle_id

    def add(self, lease: Lease) -> Lease:
        self._leases[lease.handle_id] = lease
        return lease

    def get(self, handle_id: Any) -> Lease:
        """The lease for ``handle_id``; with it omitted, the only lease of a connection."""
        if handle_id is None:
            if not self.shared and len(self._leases) == 1:
                lease = next(iter(self._leases.values()))
            elif not self._leases:
                raise UnknownHandle("no handle is open: call rkllm.init first")
            else:
                raise InvalidParams(
                    f"handle_id is required ({len(self._leases)} handles are open here)"
                    if not self.shared
                    else "handle_id is required over this transport",
                    "handle_id",
                )
        else:
            if not isinstance(handle_id, int) or isinstance(handle_id, bool):
                raise InvalidParams("handle_id must be an integer", "handle_id")
            found = self._leases.get(handle_id)
            if found is None:
                raise UnknownHandle(
                    f"handle {handle_id} is not open here (destroyed, expired, or opened "
                    "on another connection)",
                    handle_id,
                )
            lease = found
        lease.last_used = self.clock()
        return lease

    async def close(self, lease: Lease) -> None:
        """End the lease: cancel its run, release the engine lease. Closing twice does nothing."""
        if self._leases.pop(lease.handle_id, None) is None:
            return
        if lease.running is not None and lease.running.task is not None and lease.running.running:
            lease.running.task.cancel()
            await asyncio.gather(lease.running.task, return_exceptions=True)
        try:
            await self.engine.close_lease(lease.engine_lease)
        except RkioError as exc:  # the engine already stopped (it released every lease then)
            log.info("handle %d: lease not closed by the engine: %s", lease.handle_id, exc)

    async def close_all(self) -> None:
        for lease in list(self._leases.values()):
            await self.close(lease)

    async def expire(self) -> list[int]:
        """Close leases idle for longer than ``ttl`` (never one that is running); their ids."""
        now = self.clock()
        stale = [
            lease
            for lease in self._leases.values()
            if not lease.is_running and now - lease.last_used > self.ttl
        ]
        for lease in stale:
            log.info(
                "JSON-RPC handle %d on %s expired after %.0fs idle", lease.handle_id, lease.model, self.ttl
            )
            await self.close(lease)
        return [lease.handle_id for lease in stale]
