"""``rkio mcp``: an MCP server over stdio for MCP clients (Claude Desktop/Code, IDEs, agent frameworks).

It starts no engine: every tool call goes to the running ``rkio serve`` through its JSON-RPC Unix socket
(``--socket``; default: the ``rpc_unix`` setting, ``<state dir>/rpc.sock``), so admission, queueing and
crash isolation stay in the one server. It may start before the server does: a call made while the server
is down is a tool error saying so. stdout carries the protocol; logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any

import anyio

from rkio.cli.rpc import socket_path


def register(subparsers: Any) -> None:
    """Add ``mcp``."""
    parser = subparsers.add_parser("mcp", help="MCP server over stdio, for MCP clients (talks to rkio serve)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--socket", type=Path, metavar="PATH",
                        help="the server's JSON-RPC socket (default: rpc_unix setting, <state dir>/rpc.sock)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        path = socket_path(args)
    except (ValueError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"rkio mcp: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from rkio.mcp.rpc_backend import RpcBackend
    from rkio.mcp.tools import build_server

    server = build_server(RpcBackend(path))
    anyio.run(server.run_stdio_async)
    return 0
