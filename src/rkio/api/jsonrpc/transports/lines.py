"""Newline-delimited JSON over a byte stream (Unix socket, TCP): the framing, nothing else.

Each line is one JSON-RPC message (or batch) and is dispatched in its own task, so a second request on the
same connection (``rkllm.abort``) is answered while a ``rkllm.run`` is still streaming. A message without its
newline at end of input is still answered. A line longer than the frame limit gets a -32011 error and the
connection is closed (the rest of the line cannot be told apart from the next message).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from rkio.api.jsonrpc.dispatcher import Dispatcher
from rkio.api.jsonrpc.protocol import encode, error_message
from rkio.api.jsonrpc.session import Send, Session
from rkio.errors import PayloadTooLarge

log = logging.getLogger("rkio.jsonrpc")

MAX_IN_FLIGHT = 64  # calls running at once on one connection; further lines wait (backpressure)

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
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def answer(line: bytes) -> None:
        try:
            reply = await dispatcher.handle(line, session)
            if reply is not None:
                await out.write(reply)
        except ConnectionResetError:
            pass
        finally:
            slots.release()

    try:
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                line = exc.partial
                if line.strip():
                    await slots.acquire()
                    await session.spawn(answer(line))
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
                await slots.acquire()
                session.spawn(answer(line))
    finally:
        await session.close()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
