"""Newline-delimited JSON over a byte stream (Unix socket, TCP): the framing, nothing else.

Each line is one JSON-RPC message (or batch) and is dispatched in its own task, so a second request on the
same connection (``rkllm.abort``) is answered while a ``rkllm.run`` is still streaming. A line longer than
the frame limit gets a -32011 error and the connection is closed (the rest of the line cannot be told apart
from the next message).

End of input is either a client that has sent everything and still reads (``printf ... | socat``, ``rkio rpc
--stdio`` at the end of its stdin: a half-close) or a client that is gone. A Unix socket tells them apart
(POLLHUP once the peer closed both directions): a client that is gone has its calls cancelled at once; after
a half-close the calls already received are finished and answered (a message without its final newline
too), then the connection and its handles are closed. TCP cannot tell them apart, so it finishes the calls;
a generation streaming to a client that is gone stops at its next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
from collections.abc import Callable
from typing import Any

from rkio.api.jsonrpc.dispatcher import Dispatcher
from rkio.api.jsonrpc.protocol import encode, error_message
from rkio.api.jsonrpc.session import Send, Session
from rkio.errors import PayloadTooLarge

log = logging.getLogger("rkio.jsonrpc")


SessionFactory = Callable[[str, Send], Session]


class LineWriter:
    """Serialises writes of whole lines; after the peer went away writes are dropped."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.lock = asyncio.Lock()
        self.broken = False

    async def write(self, data: bytes) -> None:
        if self.broken:
            raise ConnectionResetError("the client closed the connection")
        async with self.lock:
            try:
                self.writer.write(data + b"\n")
                await self.writer.drain()
            except (ConnectionError, RuntimeError) as exc:
                self.broken = True
                raise ConnectionResetError("the client closed the connection") from exc

    async def send(self, message: dict[str, Any]) -> None:
        await self.write(encode(message))


def peer_closed(writer: asyncio.StreamWriter) -> bool:
    """True when the peer of a Unix socket closed both directions (not just its sending side)."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLHUP)
    return any(events & select.POLLHUP for _, events in poller.poll(0))


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    transport: str,
    dispatcher: Dispatcher,
    new_session: SessionFactory,
) -> None:
    """Serve one connection until the peer closes it; then cancel what runs on it and close its leases."""
    out = LineWriter(writer)
    session = new_session(transport, out.send)

    async def answer(line: bytes) -> None:
        try:
            reply = await dispatcher.handle(line, session)
            if reply is not None:
                await out.write(reply)
        except ConnectionResetError:
            pass

    try:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if peer_closed(writer):
                    break
                if exc.partial.strip():
                    await session.admit(answer(exc.partial))
                await session.drain()
                break
            except asyncio.LimitOverrunError:
                err = PayloadTooLarge(
                    f"message is larger than the frame limit of {dispatcher.max_frame} "
                    "bytes; closing the connection"
                )
                with contextlib.suppress(ConnectionResetError):
                    await out.send(error_message(None, err))
                break
            except ConnectionError:
                break
            if line.strip():
                await session.admit(answer(line))
    finally:
        await session.close()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
