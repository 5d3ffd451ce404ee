"""MCP on a live ``rkio serve``, driven by the official ``mcp`` SDK client: Streamable HTTP at ``/mcp``, and
``rkio mcp`` over stdio (a subprocess that reaches the server through its JSON-RPC Unix socket)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import httpx2
import pytest
from live_server import LiveServer
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_checks import (
    check_cancel_frees_lane,
    check_chat,
    check_list_models,
    check_tool_errors,
    check_tools_listed,
    text_of,
)


def rkio_mcp(home: Path, *flags: str) -> StdioServerParameters:
    """``rkio mcp`` as an MCP client launches it; ``RKIO_HOME`` leads it to the server's socket."""
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "RKIO_HOME": str(home)}
    return StdioServerParameters(command=sys.executable, args=["-m", "rkio", "mcp", *flags], env=env)


async def test_http_tools_errors_and_cancel(server: LiveServer) -> None:
    async with Client(server.url + "/mcp") as client:
        assert client.server_info is not None and client.server_info.name == "rkio"
        await check_tools_listed(client)
        await check_list_models(client)
        await check_chat(client)
        await check_tool_errors(client, server.log_path.parent / "models")
        await check_cancel_frees_lane(client, server)
        models = await client.read_resource("rkio://models")
        assert "sim-echo" in models.contents[0].text  # type: ignore[union-attr]


async def test_http_needs_the_api_key(start_server: Callable[..., LiveServer]) -> None:
    server = start_server("--api-key", "sesame")
    async with httpx.AsyncClient() as http:
        assert (await http.post(server.url + "/mcp", json={})).status_code == 401
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the 401 in its own error types
        async with Client(server.url + "/mcp") as client:
            await client.list_tools()
    keyed = httpx2.AsyncClient(headers={"Authorization": "Bearer sesame"})
    async with keyed, Client(streamable_http_client(server.url + "/mcp", http_client=keyed)) as client:
        result = await client.call_tool("list_models", {})
        assert not result.is_error and result.structured_content is not None
    assert server.stop() == 0, server.log()


async def test_stdio_tools_errors_and_cancel(server: LiveServer) -> None:
    home = server.log_path.parent
    async with Client(rkio_mcp(home)) as client:
        assert client.server_info is not None and client.server_info.name == "rkio"
        await check_tools_listed(client)
        await check_list_models(client)
        await check_chat(client)
        await check_tool_errors(client, home / "models")
        await check_cancel_frees_lane(client, server)
        status = await client.read_resource("rkio://status")
        assert '"budget_bytes"' in status.contents[0].text  # type: ignore[union-attr]


async def test_stdio_without_a_server_says_so(tmp_path: Path) -> None:
    async with Client(rkio_mcp(tmp_path, "--socket", str(tmp_path / "rpc.sock"))) as client:
        result = await client.call_tool("list_models", {})
        assert result.is_error and "is `rkio serve` running?" in text_of(result)
        assert (await client.call_tool("status", {})).is_error  # the session goes on, still saying so
