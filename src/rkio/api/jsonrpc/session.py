"""A client as the dispatcher sees it: one connection, or one HTTP request / UDP datagram.

A session owns the calls running on it: when the connection closes, every one of them is cancelled (which
aborts its generation and frees the NPU lane) and, on connection transports, its leases are closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from rkio.api.jsonrpc.leases import LeaseTable

log = logging.getLogger("rkio.jsonrpc")

Send = Callable[[dict[str, Any]], Awaitable[None]]
MAX_IN_FLIGHT = 64  # messages being answered at once on one session; a transport waits (or drops) beyond


class Session:
    def __init__(
        self,
        transport: str,
        leases: LeaseTable,
        send: Send | None,
        *,
        authenticated: bool,
        stream_default: str = "push",
    ) -> None:
        self.transport = transport
        self.leases = leases
        self.send = send  # None: the transport cannot push (HTTP); streams are pulled instead
        self.authenticated = authenticated
        self.stream_default = stream_default  # "push" | "callbacks": what run_async uses unless told
        self._tasks: set[asyncio.Task[Any]] = set()
        self._admitted = 0
        self._slot_free = asyncio.Event()
        self.closed = False

    @property
    def owns_leases(self) -> bool:
        """Connection transports own their leases; HTTP/UDP share a table that expires them instead."""
        return not self.leases.shared

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as part of this session (cancelled when the session closes)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    async def admit(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """``spawn`` once fewer than ``MAX_IN_FLIGHT`` admitted messages are being answered (backpressure)."""
        while self._admitted >= MAX_IN_FLIGHT:
            self._slot_free.clear()
            await self._slot_free.wait()
        return self._start(coro)

    def try_admit(self, coro: Coroutine[Any, Any, Any]) -> bool:
        """``spawn`` if a slot is free, else refuse (transports that cannot wait: UDP)."""
        if self._admitted >= MAX_IN_FLIGHT:
            coro.close()
            return False
        self._start(coro)
        return True

    def _start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        self._admitted += 1
        task = self.spawn(coro)
        task.add_done_callback(self._release)
        return task

    def _release(self, task: asyncio.Task[Any]) -> None:
        self._admitted -= 1
        self._slot_free.set()

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("JSON-RPC task failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait until nothing runs on the session (the calls already received are answered)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel what still runs on the session and release its leases."""
        if self.closed:
            return
        self.closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.owns_leases:
            await self.leases.close_all()
