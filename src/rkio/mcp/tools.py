"""The MCP server: rkio's models as tools (``chat``, ``generate``, ``list_models``, ``status``) and resources
(``rkio://models``, ``rkio://status``), written once over a ``ToolBackend``.

Engine errors (unknown model, the memory refusal, a full queue, a crashed runner) come back as MCP tool
errors carrying the engine's explanation; the session stays up. Generations report MCP progress (tokens so
far; a message while queued or loading) to clients that asked for it with a progress token.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from rkio import __version__
from rkio.errors import RkioError
from rkio.mcp.backend import (
    ChatCall,
    Completion,
    GenerateCall,
    ModelList,
    Options,
    Progress,
    StatusReport,
    ToolBackend,
    Turn,
)

T = TypeVar("T")

PROGRESS_INTERVAL = 0.25  # seconds between token-count notifications (a waiting message always goes out)
MAX_STOP_STRINGS = 16

INSTRUCTIONS = (
    "rkio runs language models on this machine (a Rockchip NPU board, or its CPU). Call list_models for the "
    "model names, then chat or generate with one of them. Only one generation runs on the NPU at a time; "
    "others wait in a queue, and a model that is not loaded is loaded first (that can take a while). "
    "status shows what is loaded, the memory budget and the queue.")

Model = Annotated[str, Field(min_length=1, max_length=256, description="a model name from list_models")]
MaxTokens = Annotated[int | None, Field(ge=1, le=1_000_000,
                                        description="most tokens to generate (default: the model's limit)")]
Temperature = Annotated[float | None, Field(ge=0.0, le=2.0, description="sampling temperature (0: greedy)")]
TopP = Annotated[float | None, Field(gt=0.0, le=1.0, description="nucleus sampling: probability mass kept")]
TopK = Annotated[int | None, Field(ge=0, le=100_000, description="sample among the k likeliest tokens")]
Stop = Annotated[list[str] | None, Field(max_length=MAX_STOP_STRINGS,
                                         description="strings that end the reply when generated")]


def explanation(err: RkioError) -> str:
    """The engine's explanation, with its retry hint: the text the calling model reads."""
    if err.retry_after is None:
        return err.message
    return f"{err.message} (retry after {err.retry_after:.0f} s)"


async def answer(work: Awaitable[T]) -> T:
    """A tool's result; an engine error becomes an MCP tool error (the session goes on)."""
    try:
        return await work
    except RkioError as err:
        raise ToolError(explanation(err)) from None


async def read_json(work: Awaitable[BaseModel]) -> str:
    """A resource's JSON text; an engine error becomes an MCP resource error."""
    try:
        return (await work).model_dump_json()
    except RkioError as err:
        raise ResourceError(explanation(err)) from None


def _options(max_tokens: int | None, temperature: float | None, top_p: float | None, top_k: int | None,
             stop: list[str] | None) -> Options:
    return Options(max_tokens=max_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                   stop=tuple(stop or ()))


def _progress(ctx: Context, total: int | None, clock: Callable[[], float]) -> Progress:
    """Tokens so far as MCP progress, at most every ``PROGRESS_INTERVAL`` seconds; waiting messages always."""
    last: float | None = None  # when tokens were last reported; the first token always is

    async def report(tokens: int, message: str | None) -> None:
        nonlocal last
        if message is None:
            now = clock()
            if last is not None and now - last < PROGRESS_INTERVAL:
                return
            last = now
        await ctx.report_progress(tokens, total, message)

    return report


def build_server(backend: ToolBackend, clock: Callable[[], float] = time.monotonic) -> MCPServer:
    """An MCP server whose tools and resources call ``backend``; ``clock`` paces progress notifications."""
    server: MCPServer = MCPServer("rkio", version=__version__, instructions=INSTRUCTIONS)
    generation = ToolAnnotations(read_only_hint=True, open_world_hint=False, idempotent_hint=False)
    lookup = ToolAnnotations(read_only_hint=True, open_world_hint=False, idempotent_hint=True)

    @server.tool(annotations=generation)
    async def chat(model: Model,
                   messages: Annotated[list[Turn], Field(min_length=1, max_length=1000,
                                                         description="the conversation, oldest first")],
                   ctx: Context, max_tokens: MaxTokens = None, temperature: Temperature = None,
                   top_p: TopP = None, top_k: TopK = None, stop: Stop = None) -> Completion:
        """Ask a local model for the next assistant message of a conversation.

        The model's chat template is applied. Sends progress notifications (tokens generated so far)
        when the call carries a progress token; cancelling the call stops the generation."""
        call = ChatCall(model, tuple(messages), _options(max_tokens, temperature, top_p, top_k, stop))
        return await answer(backend.chat(call, _progress(ctx, max_tokens, clock)))

    @server.tool(annotations=generation)
    async def generate(model: Model, prompt: Annotated[str, Field(min_length=1, description="the prompt")],
                       ctx: Context,
                       raw: Annotated[bool, Field(description="send the prompt as is, without the chat "
                                                              "template (completion-style prompts)")] = False,
                       max_tokens: MaxTokens = None, temperature: Temperature = None, top_p: TopP = None,
                       top_k: TopK = None, stop: Stop = None) -> Completion:
        """Generate text from a single prompt with a local model.

        Without raw, the prompt is sent as one user message through the model's chat template. Sends
        progress notifications like chat; cancelling the call stops the generation."""
        call = GenerateCall(model, prompt, raw, _options(max_tokens, temperature, top_p, top_k, stop))
        return await answer(backend.generate(call, _progress(ctx, max_tokens, clock)))

    @server.tool(annotations=lookup)
    async def list_models() -> ModelList:
        """The models rkio can run: name, file size, format (rkllm on the NPU, gguf on the CPU), whether
        each is loaded now, and its context length in tokens."""
        return await answer(backend.list_models())

    @server.tool(annotations=lookup)
    async def status() -> StatusReport:
        """rkio's state: the loaded models (state, memory, queue), the memory budget and what is free,
        requests waiting and generations running."""
        return await answer(backend.status())

    @server.resource("rkio://models", name="models", mime_type="application/json",
                     description="the models rkio can run (as the list_models tool returns them)")
    async def models_resource() -> str:
        return await read_json(backend.list_models())

    @server.resource("rkio://status", name="status", mime_type="application/json",
                     description="rkio's state (as the status tool returns it)")
    async def status_resource() -> str:
        return await read_json(backend.status())

    return server
