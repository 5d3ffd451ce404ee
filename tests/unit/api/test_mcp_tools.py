"""The MCP tools over a scripted backend, through the SDK's in-process client: what an MCP client sees
for results, engine errors, bad arguments, resources and progress pacing."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent

from rkio.errors import Busy, InsufficientMemory, RkioError
from rkio.mcp.backend import (
    ChatCall,
    Completion,
    GenerateCall,
    ModelEntry,
    ModelList,
    Progress,
    StatusReport,
    TokenUsage,
)
from rkio.mcp.tools import PROGRESS_INTERVAL, build_server

HELLO = [{"role": "user", "content": "hi"}]


class ScriptedBackend:
    """Replies from a script: ``steps`` are (clock time, tokens, message) progress reports, then ``error``."""

    def __init__(self, clock: list[float], steps: list[tuple[float, int, str | None]] | None = None,
                 error: RkioError | None = None) -> None:
        self.clock = clock
        self.steps = steps or []
        self.error = error
        self.calls: list[ChatCall | GenerateCall] = []

    async def _reply(self, call: ChatCall | GenerateCall, progress: Progress) -> Completion:
        self.calls.append(call)
        for at, tokens, message in self.steps:
            self.clock[0] = at
            await progress(tokens, message)
        if self.error is not None:
            raise self.error
        return Completion(model=call.model, text="ok", finish_reason="stop",
                          usage=TokenUsage(prompt_tokens=1, completion_tokens=1))

    async def chat(self, call: ChatCall, progress: Progress) -> Completion:
        return await self._reply(call, progress)

    async def generate(self, call: GenerateCall, progress: Progress) -> Completion:
        return await self._reply(call, progress)

    async def list_models(self) -> ModelList:
        if self.error is not None:
            raise self.error
        return ModelList(models=[ModelEntry(name="m", size=1, format="rkllm", loaded=False, context=4096)])

    async def status(self) -> StatusReport:
        return StatusReport(loaded=[], budget_bytes=2, used_bytes=0, free_bytes=2, queue_length=0, running=0,
                            npu_lanes=1)


def text(result: Any) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


async def test_chat_passes_options_and_returns_the_structured_reply() -> None:
    backend = ScriptedBackend([0.0])
    async with Client(build_server(backend, clock=lambda: 0.0)) as client:
        result = await client.call_tool("chat", {"model": "m", "messages": HELLO, "max_tokens": 7,
                                                 "temperature": 0.0, "stop": ["END"]})
    assert not result.is_error
    assert result.structured_content == {"model": "m", "text": "ok", "finish_reason": "stop",
                                         "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    (call,) = backend.calls
    assert isinstance(call, ChatCall) and call.messages[0].content == "hi"
    assert call.options.max_tokens == 7 and call.options.temperature == 0.0 and call.options.stop == ("END",)


async def test_engine_errors_are_tool_errors_with_the_engine_explanation() -> None:
    refusal = InsufficientMemory("big needs 3.0 GiB but only 1.0 GiB of the 2.0 GiB memory budget is free")
    async with Client(build_server(ScriptedBackend([0.0], error=refusal))) as client:
        result = await client.call_tool("generate", {"model": "big", "prompt": "x"})
        assert result.is_error and refusal.message in text(result)
        listing = await client.call_tool("list_models", {})
        assert listing.is_error and refusal.message in text(listing)
    full = Busy("queue full", retry_after=3)
    async with Client(build_server(ScriptedBackend([0.0], error=full))) as client:
        busy = await client.call_tool("chat", {"model": "m", "messages": HELLO})
        assert busy.is_error and "queue full (retry after 3 s)" in text(busy)
        assert not (await client.call_tool("status", {})).is_error  # the session goes on


async def test_bad_arguments_are_tool_errors_naming_the_field() -> None:
    backend = ScriptedBackend([0.0])
    async with Client(build_server(backend)) as client:
        for arguments, field in (({"model": "m", "messages": []}, "messages"),
                                 ({"model": "m", "messages": [{"role": "robot", "content": "x"}]}, "role"),
                                 ({"model": "m", "messages": HELLO, "temperature": 9}, "temperature"),
                                 ({"model": "m", "messages": HELLO, "stop": ["s"] * 17}, "stop")):
            result = await client.call_tool("chat", arguments)
            assert result.is_error and field in text(result), arguments
    assert backend.calls == []


async def test_progress_reports_tokens_at_most_every_interval_and_every_waiting_message() -> None:
    clock = [0.0]
    half = PROGRESS_INTERVAL / 2
    steps = [(0.0, 0, "queued, 1 ahead"), (0.0, 0, "loading m"), (0.0, 1, None), (half, 2, None),
             (PROGRESS_INTERVAL, 3, None), (PROGRESS_INTERVAL + half, 0, "still waiting"),
             (2 * PROGRESS_INTERVAL + half, 9, None)]
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    async with Client(build_server(ScriptedBackend(clock, steps), clock=lambda: clock[0])) as client:
        result = await client.call_tool("generate", {"model": "m", "prompt": "x", "max_tokens": 10},
                                        progress_callback=on_progress)
    assert not result.is_error
    assert seen == [(0, 10, "queued, 1 ahead"), (0, 10, "loading m"), (1, 10, None), (3, 10, None),
                    (0, 10, "still waiting"), (9, 10, None)]


async def test_resources_hold_the_tools_answers() -> None:
    async with Client(build_server(ScriptedBackend([0.0]))) as client:
        listed = {str(r.uri) for r in (await client.list_resources()).resources}
        assert listed == {"rkio://models", "rkio://status"}
        models = await client.read_resource("rkio://models")
        assert ModelList.model_validate_json(models.contents[0].text).models[0].name == "m"  # type: ignore


async def test_a_resource_the_engine_cannot_produce_is_an_error_with_its_explanation() -> None:
    refusal = InsufficientMemory("no room")
    async with Client(build_server(ScriptedBackend([0.0], error=refusal))) as client:
        with pytest.raises(MCPError, match="no room"):
            await client.read_resource("rkio://models")
