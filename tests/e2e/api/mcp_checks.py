"""What the MCP e2e tests check, for any transport: a connected SDK ``Client`` against a live server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from live_server import LiveServer
from mcp import Client
from mcp_types import CallToolResult, TextContent

import simkit

TOOLS = {"chat", "generate", "list_models", "status"}
CANCEL_SETTLE_S = 20.0  # bounds waits for states; the generation cancelled would take 41 s (2048 tokens)


def text_of(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


async def check_tools_listed(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == TOOLS
    chat = tools["chat"]
    assert chat.description and "conversation" in chat.description
    assert set(chat.input_schema["required"]) == {"model", "messages"}
    assert {"max_tokens", "temperature", "top_p", "top_k", "stop"} <= set(chat.input_schema["properties"])
    assert chat.output_schema is not None and "text" in chat.output_schema["properties"]


async def check_list_models(client: Client) -> None:
    result = await client.call_tool("list_models", {})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    models = {m["name"]: m for m in result.structured_content["models"]}
    assert {"sim-a", "sim-echo", "sim-slow"} <= set(models)
    assert models["sim-echo"] == {"name": "sim-echo", "size": 32 << 20, "format": "rkllm",
                                  "loaded": models["sim-echo"]["loaded"], "context": 512}


async def check_chat(client: Client) -> None:
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    result = await client.call_tool(
        "chat", {"model": "sim-echo", "messages": [{"role": "system", "content": "ignored"},
                                                   {"role": "user", "content": "red green blue [[n=3]]"}]},
        progress_callback=on_progress)
    assert not result.is_error, text_of(result)
    reply = result.structured_content
    assert reply is not None
    assert reply["text"].split() == ["red", "green", "blue"]
    assert reply["finish_reason"] == "stop" and reply["usage"]["completion_tokens"] == 3
    assert progress and progress == sorted(progress) and 1 <= progress[-1] <= 3
    short = await client.call_tool("generate", {"model": "sim-a", "prompt": "one two three", "max_tokens": 2})
    assert short.structured_content is not None and short.structured_content["finish_reason"] == "length"
    assert short.structured_content["usage"]["completion_tokens"] == 2


async def check_tool_errors(client: Client, models_dir: Any) -> None:
    hello = [{"role": "user", "content": "x"}]
    missing = await client.call_tool("chat", {"model": "no-such", "messages": hello})
    assert missing.is_error and "no-such" in text_of(missing) and "not found" in text_of(missing)
    bad = await client.call_tool("chat", {"model": "sim-a", "messages": []})
    assert bad.is_error and "messages" in text_of(bad)
    simkit.make_model(models_dir / "sim-huge" / "sim-huge.rkllm", 3 << 30)  # > the 2 GiB budget
    huge = await client.call_tool("generate", {"model": "sim-huge", "prompt": "x"})
    assert huge.is_error and "memory budget" in text_of(huge), text_of(huge)
    simkit.make_model(models_dir / "sim-crash" / "sim-crash.rkllm", 32 << 20, fault="segv_at_token:2")
    crash = await client.call_tool("chat", {"model": "sim-crash", "messages": hello})
    assert crash.is_error and "crashed with SIGSEGV during generation" in text_of(crash), text_of(crash)
    after = await client.call_tool("status", {})  # the session survived every error
    assert not after.is_error and after.structured_content is not None
    assert after.structured_content["budget_bytes"] == 2 << 30


async def engine_status(server: LiveServer) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        reply = await http.get(server.url + "/rkio/status", timeout=10)
    reply.raise_for_status()
    return dict(reply.json())


async def settled_status(server: LiveServer) -> dict[str, Any]:
    """The engine status once nothing runs (or after ``CANCEL_SETTLE_S``, for the assertion to show)."""
    deadline = time.monotonic() + CANCEL_SETTLE_S
    status = await engine_status(server)
    while status["running"] and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        status = await engine_status(server)
    return status


async def check_cancel_frees_lane(client: Client, server: LiveServer) -> None:
    """A long generation on the 20 ms/token model, cancelled once tokens flow, leaves nothing running and
    the single NPU lane free: another model's request is then served."""
    streaming = asyncio.Event()

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        if done >= 1:
            streaming.set()

    call = asyncio.ensure_future(client.call_tool(
        "chat", {"model": "sim-slow", "messages": [{"role": "user", "content": "go on [[n=2000]]"}]},
        progress_callback=on_progress))
    await asyncio.wait_for(streaming.wait(), CANCEL_SETTLE_S)
    assert (await engine_status(server))["running"] == 1
    call.cancel()
    assert (await asyncio.gather(call, return_exceptions=True))[0].__class__ is asyncio.CancelledError
    status = await settled_status(server)
    assert status["running"] == 0 and status["counters"].get("cancelled", 0) >= 1, status
    slow = next(m for m in status["loaded"] if m["name"] == "sim-slow")
    assert slow["state"] == "idle"
    after = await client.call_tool("generate", {"model": "sim-echo", "prompt": "still here [[n=2]]"})
    assert after.structured_content is not None, text_of(after)
    assert after.structured_content["text"].split() == ["still", "here"]
    assert (await engine_status(server))["counters"].get("completed", 0) >= 1
