"""``rkio rpc --stdio``: JSON-RPC on stdin/stdout, bridged to the running server's Unix socket.

It never starts an engine: with no server listening on the socket it says so and exits 1. Lines from stdin go
to the socket unchanged and every line from the socket goes to stdout; logs go to stderr only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

from rkio.config import Settings

CHUNK = 1 << 16


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rpc",
        help="JSON-RPC on stdin/stdout, through the running server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stdio", action="store_true", required=True, help="bridge stdin/stdout (required)")
    parser.add_argument(
        "--socket",
        type=Path,
        metavar="PATH",
        help="the server's socket (default: rpc_unix setting, <state dir>/rpc.sock)",
    )
    parser.set_defaults(func=run)


def socket_path(args: argparse.Namespace) -> Path:
    if args.socket is not None:
        return Path(args.socket)
    from rkio.api.jsonrpc.service import unix_socket_path

    path = unix_socket_path(Settings.load())
    if path is None:
        raise OSError("the Unix socket is off (rpc_unix = off); pass --socket PATH")
    return path


async def _pump_in(source: BinaryIO, writer: asyncio.StreamWriter) -> None:
    while data := await asyncio.to_thread(source.read1 if hasattr(source, "read1") else source.read, CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


async def _pump_out(reader: asyncio.StreamReader, sink: BinaryIO) -> None:
    while data := await reader.read(CHUNK):
        sink.write(data)
        sink.flush()


async def bridge(path: Path, source: BinaryIO, sink: BinaryIO) -> None:
    """Copy ``source`` to the socket and the socket to ``sink`` until the server closes its side."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    inbound = asyncio.ensure_future(_pump_in(source, writer))
    try:
        await _pump_out(reader, sink)
    finally:
        inbound.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await inbound
        writer.close()


def run(args: argparse.Namespace) -> int:
    try:
        path = socket_path(args)
    except (OSError, ValueError) as exc:
        print(f"rkio rpc: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(bridge(path, sys.stdin.buffer, sys.stdout.buffer))
    except (FileNotFoundError, ConnectionRefusedError):
        print(
            f"rkio rpc: no rkio server is listening on {path}; start one with `rkio serve`", file=sys.stderr
        )
        return 1
    except BrokenPipeError:  # the client closed our stdout: it is gone, and so is its connection now
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at interpreter exit
        return 0
    except KeyboardInterrupt:
        return 130
    return 0
