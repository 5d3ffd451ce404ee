"""A streamed response's client socket, lent to the runner for a relay (``rkio.engine.chunk_push``).

ASGI gives an app no socket. uvicorn's httptools protocol hands each request a ``send`` that is a bound
method of the request's cycle, which holds the connection's transport, whether the response is chunked,
and its flow control. This module is the one place that reads those, and it declines (None) whatever it
does not recognise: another server or uvicorn's h11 protocol, TLS, a response that is not chunked. The
stream then writes every chunk itself, as before.

While the socket is lent the stream writes nothing of its own to it; ``ended`` gives it back, with the
unsent end of the runner's last chunk to write first, and ``back`` asks for it (shutdown, an error).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from starlette.types import Send

from rkio.api.access import RequestRecord
from rkio.engine.chunk_push import RelayFormat

_CYCLE_MODULE = "uvicorn.protocols.http.httptools_impl"


class LentSocket:
    """The ``SocketRelay`` of one HTTP stream."""

    def __init__(self, cycle: Any, fd: int, fmt: RelayFormat, record: RequestRecord,
                 writing: Callable[[], bool]) -> None:
        self.format = fmt
        self.returned = asyncio.Event()  # cleared while lent: the runner may be writing, the stream not
        self.returned.set()
        self._cycle = cycle
        self._fd = fd
        self._record = record
        self._writing = writing
        self._reclaim: Callable[[], None] | None = None

    def ready_fd(self, reclaim: Callable[[], None]) -> int | None:
        cycle = self._cycle
        if (self._writing() or cycle.disconnected or cycle.response_complete or cycle.flow.write_paused
                or cycle.transport.is_closing() or cycle.transport.get_write_buffer_size()):
            return None
        self._reclaim = reclaim
        self.returned.clear()
        return self._fd

    @property
    def lent(self) -> bool:
        return not self.returned.is_set()

    async def back(self, timeout: float) -> bool:  # noqa: ASYNC109 (a bound the caller picks)
        """Ask for the socket back and wait for it; False if it is still lent after ``timeout`` s."""
        if not self.lent:
            return True
        if self._reclaim is not None:
            self._reclaim()
        try:
            await asyncio.wait_for(self.returned.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def relayed(self, gaps: Sequence[float]) -> None:
        self._record.relayed(time.perf_counter(), gaps)

    def ended(self, residue: bytes) -> None:
        self.returned.set()
        cycle = self._cycle
        if residue and not cycle.disconnected and not cycle.transport.is_closing():
            cycle.transport.write(residue)  # already an HTTP chunk's end: uvicorn's framing is not needed


def lend_socket(send: Send, fmt: RelayFormat | None, record: RequestRecord,
                writing: Callable[[], bool]) -> LentSocket | None:
    """The ``SocketRelay`` for a response whose body chunks go to ``send`` (the server's own), or None
    when there is no format or the socket cannot be lent."""
    cycle = getattr(send, "__self__", None)
    if fmt is None or type(cycle).__module__ != _CYCLE_MODULE:
        return None
    transport = getattr(cycle, "transport", None)
    if (getattr(cycle, "chunked_encoding", None) is not True or transport is None
            or not hasattr(cycle, "flow") or transport.get_extra_info("sslcontext") is not None):
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    return LentSocket(cycle, sock.fileno(), fmt, record, writing)
