"""Blocking JSON-RPC clients for every transport, written the plain way a user's program would be.

Each offers ``call`` (result or RpcError), ``stream`` (chunks and final result: pushed notifications, or
pulled over HTTP) and ``send``/``receive`` for scripts that interleave requests (abort while running).
"""

from __future__ import annotations

import itertools
import json
import os
import select
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
from websockets.sync.client import connect as ws_connect

TIMEOUT = 30.0


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('message')} ({error.get('code')})")
        self.code = error.get("code")
        self.error = error


def result_of(message: dict[str, Any]) -> Any:
    if "error" in message:
        raise RpcError(message["error"])
    return message["result"]


class Conn:
    """Common logic over a transport's ``send_bytes`` / ``receive_message``."""

    push = True
    name = "?"

    def __init__(self) -> None:
        self.ids = itertools.count(1)
        self.backlog: list[dict[str, Any]] = []

    def send_bytes(self, data: bytes) -> None:
        raise NotImplementedError

    def receive_message(self, timeout: float) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def send(self, method: str, params: Any = None) -> int:
        rid = next(self.ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        self.send_bytes(json.dumps(message).encode())
        return rid

    def receive(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        message = self.receive_message(timeout)
        assert isinstance(message, dict), message
        return message

    def wait(self, rid: int, timeout: float = TIMEOUT) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Messages until the response to ``rid``: (the others, in order; the response)."""
        others: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(max(0.1, deadline - time.monotonic()))
            if message.get("id") == rid and "method" not in message:
                self.backlog[:0] = [m for m in others if m.get("id") not in (None, rid)]
                return [m for m in others if m.get("id") in (None, rid)], message
            others.append(message)

    def call(self, method: str, params: Any = None) -> Any:
        return result_of(self.wait(self.send(method, params))[1])

    def stream(self, method: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
        notes, reply = self.wait(self.send(method, {**params, "stream": True}))
        return [n["params"] for n in notes if n.get("method") == method], result_of(reply)

    def callbacks(self, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """nano's callbacks: results with the request's id until _callback_state 2 or 3."""
        rid = self.send(method, params)
        results = []
        while True:
            message = self.receive()
            if message.get("id") != rid:
                self.backlog.append(message)
                continue
            results.append(result_of(message))
            if results[-1].get("_callback_state") in (2, 3):
                return results


class LineConn(Conn):
    """Unix socket or TCP: one JSON message per line."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        super().__init__()
        self.sock = sock
        self.name = name
        self.buffer = b""

    @classmethod
    def unix(cls, path: str) -> LineConn:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return cls(sock, "unix")

    @classmethod
    def tcp(cls, host: str, port: int) -> LineConn:
        return cls(socket.create_connection((host, port)), "tcp")

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data + b"\n")

    def receive_message(self, timeout: float) -> Any:
        while b"\n" not in self.buffer:
            self.sock.settimeout(timeout)
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionResetError("server closed the connection")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def close(self) -> None:
        self.sock.close()


class StdioConn(Conn):
    """``rkio rpc --stdio`` as a child process: lines on its stdin and stdout."""

    name = "stdio"

    def __init__(self, socket_path: str) -> None:
        super().__init__()
        self.buffer = b""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rkio", "rpc", "--stdio", "--socket", socket_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def send_bytes(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data + b"\n")
        self.process.stdin.flush()

    def receive_message(self, timeout: float) -> Any:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()  # raw reads: a buffered reader would hide lines from select
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise TimeoutError("no answer on stdout")
            data = os.read(fd, 1 << 16)
            if not data:
                raise ConnectionResetError("rkio rpc exited")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def close(self) -> None:
        """Like a client process exiting: both pipes close (the bridge then closes the socket)."""
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self.process.wait(timeout=15)


class WsConn(Conn):
    name = "ws"

    def __init__(self, url: str, api_key: str | None) -> None:
        super().__init__()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.ws = ws_connect(url, additional_headers=headers, max_size=16 << 20).__enter__()

    def send_bytes(self, data: bytes) -> None:
        self.ws.send(data.decode())

    def receive_message(self, timeout: float) -> Any:
        return json.loads(self.ws.recv(timeout=timeout))

    def close(self) -> None:
        self.ws.close()


class UdpConn(Conn):
    """One datagram per message; the API key as a param of the first call (then the address is known)."""

    name = "udp"

    def __init__(self, host: str, port: int, api_key: str | None) -> None:
        super().__init__()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((host, port))
        if api_key:
            self.call("rkio.auth", {"api_key": api_key})

    def send_bytes(self, data: bytes) -> None:
        self.sock.send(data)

    def receive_message(self, timeout: float) -> Any:
        self.sock.settimeout(timeout)
        return json.loads(self.sock.recv(1 << 16))

    def close(self) -> None:
        self.sock.close()


class HttpConn(Conn):
    """``POST /rpc``: no push, so streams are pulled with ``{stream_id}``."""

    push = False
    name = "http"

    def __init__(self, url: str, api_key: str | None) -> None:
        super().__init__()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT)
        self.replies: dict[int, dict[str, Any]] = {}

    def send_bytes(self, data: bytes) -> None:
        response = self.client.post("/rpc", content=data, headers={"Content-Type": "application/json"})
        if response.status_code != 204:
            self.backlog.append(response.json())

    def receive_message(self, timeout: float) -> Any:
        raise TimeoutError("HTTP has nothing more to receive")

    def stream(self, method: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
        stream_id = self.call(method, {**params, "stream": True})["stream_id"]
        return self.pull(method, stream_id), None

    def pull(self, method: str, stream_id: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        chunks: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not chunks or not chunks[-1]["end"]:
            assert time.monotonic() < deadline, chunks
            chunks += self.call(method, {"stream_id": stream_id})["chunks"]
            if not chunks or not chunks[-1]["end"]:
                time.sleep(0.02)
        return chunks

    def close(self) -> None:
        self.client.close()
