"""Listeners for the stream transports: the Unix socket (on by default, mode 0600) and TCP."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

log = logging.getLogger("rkio.jsonrpc")

ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str], Awaitable[None]]
"""Serves one accepted connection: (reader, writer, transport name)."""


def parse_host_port(value: str, what: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6); a bare port means 127.0.0.1."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what}: {value!r} is not HOST:PORT")
    return host, int(port)


def _socket_in_use(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def claim_socket_path(path: Path) -> None:
    """Remove a stale socket left by a server that died; refuse a live one or anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket; not replacing it")
    if _socket_in_use(path):
        raise OSError(errno.EADDRINUSE, f"another server is listening on {path}")
    path.unlink()


async def start_unix(path: Path, handler: ConnectionHandler, limit: int) -> asyncio.Server:
    """Listen on ``path`` with mode 0600 (only this user may connect; no API key is asked there)."""
    claim_socket_path(path)
    old = os.umask(0o177)  # the socket is created 0600: no window in which others could connect
    try:
        server = await asyncio.start_unix_server(
            lambda r, w: handler(r, w, "unix"), path=str(path), limit=limit
        )
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    log.info("JSON-RPC listening on unix:%s", path)
    return server


async def start_tcp(address: str, handler: ConnectionHandler, limit: int) -> asyncio.Server:
    host, port = parse_host_port(address, "--rpc-tcp")
    server = await asyncio.start_server(lambda r, w: handler(r, w, "tcp"), host=host, port=port, limit=limit)
    log.info("JSON-RPC listening on tcp:%s:%d", host, port)
    return server


def remove_socket(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
