"""``rkio rpc --stdio`` (the bridge to a running server) and the JSON-RPC settings of ``rkio serve``."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest

from rkio.cli.main import main
from rkio.cli.rpc import bridge
from rkio.config import Settings


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


def test_rpc_settings_from_flags_and_environment() -> None:
    settings = Settings.load(None, {"rpc_tcp": "127.0.0.1:9000", "rpc_lease_ttl": "2m"},
                             environ={"RKIO_RPC_STREAM_TTL": "30s", "RKIO_RPC_MAX_FRAME": "1MiB",
                                      "RKIO_RPC_STREAM_DEFAULT": "callbacks"})
    assert (settings.rpc_tcp, settings.rpc_lease_ttl) == ("127.0.0.1:9000", 120.0)
    assert settings.rpc_stream_ttl == 30.0
    assert settings.rpc_max_frame == 1 << 20 and settings.rpc_stream_default == "callbacks"
    assert Settings().rpc_unix == "auto" and Settings().rpc_lease_ttl == 600.0
    with pytest.raises(ValueError, match="rpc_stream_default"):
        Settings.load(None, {"rpc_stream_default": "smoke"}, environ={})
