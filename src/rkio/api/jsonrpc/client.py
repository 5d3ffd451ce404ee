"""A small asyncio client for the running server's JSON-RPC Unix socket (``rkio mcp``, tests, scripts).

async with await RpcClient.connect_unix(path) as client:
    reply = await client.call("rkio.chat", {"model": "qwen", "messages": [...]})
    async for chunk in client.stream("rkio.chat", {..., "stream": True}):  # notifications' params
        ...
    client.last_result  # the final response of the stream
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

from rkio.api.jsonrpc.protocol import decode, encode

DEFAULT_LIMIT = 16 << 20


class RpcCallError(Exception):
    """The server answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.data = data


class RpcClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self._streams: dict[Any, asyncio.Queue[dict[str, Any] | None]] = {}
        self._by_stream: dict[str, Any] = {}
        self.last_result: Any = None
        self._reader_task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect_unix(cls, path: str | Path, limit: int = DEFAULT_LIMIT) -> RpcClient:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=limit)
        return cls(reader, writer)

    @classmethod
    async def connect_tcp(cls, host: str, port: int, limit: int = DEFAULT_LIMIT) -> RpcClient:
        reader, writer = await asyncio.open_connection(host, port, limit=limit)
        return cls(reader, writer)

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader_task
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

    async def _read(self) -> None:
        try:
            while line := await self.reader.readline():
                if line.strip():
                    self._route(decode(line))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            gone = ConnectionResetError("the server closed the connection")
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(gone)
            for queue in self._streams.values():
                queue.put_nowait(None)

    def _route(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        if "method" in message and "id" not in message:  # a stream notification
            params = message.get("params") or {}
            stream_id = str(params.get("stream_id"))
            rid = self._by_stream.get(stream_id)
            if rid is None and len(self._streams) == 1:
                rid = next(iter(self._streams))
                self._by_stream[stream_id] = rid
            if rid in self._streams:
                self._streams[rid].put_nowait(params)
            return
        future = self._pending.pop(message.get("id"), None)
        if future is not None and not future.done():
            future.set_result(message)

    async def _send(
        self,
        method: str,
        params: Any,
        queue: asyncio.Queue[dict[str, Any] | None] | None = None,
    ) -> tuple[int, asyncio.Future[dict[str, Any]]]:
        rid = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        if queue is not None:  # before sending: the first notification may arrive at once
            self._streams[rid] = queue
        self.writer.write(encode({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}) + b"\n")
        await self.writer.drain()
        return rid, future

    @staticmethod
    def _result(message: dict[str, Any]) -> Any:
        if "error" in message:
            err = message["error"] or {}
            raise RpcCallError(int(err.get("code", 0)), str(err.get("message", "")), err.get("data"))
        return message.get("result")

    async def call(self, method: str, params: Any = None) -> Any:
        """One request, its result (RpcCallError when the server answered with an error)."""
        _, future = await self._send(method, {} if params is None else params)
        return self._result(await future)

    async def notify(self, method: str, params: Any = None) -> None:
        self.writer.write(encode({"jsonrpc": "2.0", "method": method, "params": params or {}}) + b"\n")
        await self.writer.drain()

    async def stream(self, method: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Call with ``stream: true``; yield each notification's params; the response ends the stream and
        is kept in ``last_result``. Closing the iterator early stops nothing on the server (rkllm.abort does).
        """
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        rid, future = await self._send(method, {**params, "stream": True}, queue)
        try:
            while True:
                getter: asyncio.Future[dict[str, Any] | None] = asyncio.ensure_future(queue.get())
                waiting: set[asyncio.Future[Any]] = {getter, future}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    chunk = getter.result()
                    if chunk is None:
                        break
                    yield chunk
                    continue
                getter.cancel()
                while not queue.empty():
                    chunk = queue.get_nowait()
                    if chunk is not None:
                        yield chunk
                self.last_result = self._result(future.result())
                return
        finally:
            self._streams.pop(rid, None)
