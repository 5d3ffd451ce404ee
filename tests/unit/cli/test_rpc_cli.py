"""``rkio rpc --stdio`` (the bridge to a running server) and the limits of the JSON-RPC settings (every
setting's parsing is in test_settings.py)."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest

from rkio.cli.main import main
from rkio.cli.rpc import bridge
from rkio.config import Settings
from rkio.errors import ConfigError


def test_no_server_means_exit_1_and_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rpc", "--stdio", "--socket", str(tmp_path / "none.sock")]) == 1
    err = capsys.readouterr()
    assert "no rkio server is listening" in err.err and "rkio serve" in err.err and err.out == ""


async def test_bridge_copies_both_ways(tmp_path: Path) -> None:
    path = Path("/tmp") / f"rkio-bridge-{os.getpid()}.sock"
    received: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            received.append(line)
            writer.write(b'{"jsonrpc":"2.0","id":1,"result":"ok"}\n')
            await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(echo, path=str(path))
    try:
        out = io.BytesIO()
        await asyncio.wait_for(bridge(path, io.BytesIO(b'{"jsonrpc":"2.0","id":1,"method":"x"}\n'), out), 10)
        assert received == [b'{"jsonrpc":"2.0","id":1,"method":"x"}\n']
        assert out.getvalue() == b'{"jsonrpc":"2.0","id":1,"result":"ok"}\n'
    finally:
        server.close()
        path.unlink(missing_ok=True)



def test_rpc_settings_refuse_what_the_server_cannot_serve() -> None:
    with pytest.raises(ConfigError, match="--rpc-stream-default"):
        Settings.load(None, {"rpc_stream_default": "smoke"})
    with pytest.raises(ConfigError, match="--rpc-max-frame"):
        Settings.load(None, {"rpc_max_frame": "10"})
