"""Anthropic-compatible endpoints: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

So Claude-style clients (the ``anthropic`` package, tools built on it) can use a board. ``system``,
multi-turn history, ``stop_sequences``, ``max_tokens``, ``temperature``/``top_p``/``top_k``, ``tools``
(replies parsed into ``tool_use`` blocks, ``tool_result`` blocks fed back), ``thinking`` (``<think>`` output
as ``thinking`` blocks), ``output_config.format`` (a JSON schema, as ``rkio.api.structured`` enforces or
validates it), streamed or not; errors in Anthropic's shape (``rkio.api.errors``); the API key may
come as ``x-api-key`` (``rkio.api.auth``).

``count_tokens`` counts with the model's own tokenizer and chat template where the runtime has a tokenizer
(llama.cpp: it renders and prefills the prompt with a one-token generation, so it queues like one and a
following request with the same prefix reuses the cache); rkllm has no tokenizer entry point, so there it
is an estimate. The ``X-Rkio-Token-Count`` header says which ("exact" | "estimate").
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from rkio.api.access import record_of
from rkio.api.anthropic_messages import conversation, engine_tools
from rkio.api.anthropic_schema import CountTokensRequest, MessagesRequest
from rkio.api.anthropic_stream import MessagesStreamEncoder, message_body
from rkio.api.engine_request import keep_alive_seconds, model_name, parse_body, resolve_sampling, stop_strings
from rkio.api.reply import ReplyParser, parse_reply
from rkio.api.run_report import report_run
from rkio.api.streaming import EngineStream, collect_reply
from rkio.api.structured import OutputFormat, StructuredOutput, start_generation
from rkio.config import Settings
from rkio.engine.chunk_push import ChunkPush
from rkio.engine.runner.prompt import estimate_tokens
from rkio.engine.types import ChatMessage, Engine, GenerationRequest

TOKEN_COUNT_HEADER = "X-Rkio-Token-Count"
TOKENIZING_RUNTIMES = frozenset({"llamacpp"})  # Runtime.count_tokens is None on rkllm
MESSAGE_OVERHEAD = 4  # estimate: the role markers a chat template puts around each message


def estimate_prompt(messages: list[ChatMessage], tools: tuple[dict[str, Any], ...]) -> int:
    """About four bytes per token over everything a template renders, plus a few tokens per message."""
    text = "".join(m.content + "".join(json.dumps(c) for c in m.tool_calls) for m in messages)
    text += "".join(json.dumps(t) for t in tools)
    return estimate_tokens(text) + MESSAGE_OVERHEAD * len(messages)


class AnthropicRoutes:
    def __init__(self, engine: Engine, settings: Settings, commit_after: float, heartbeat: float) -> None:
        self.engine = engine
        self.settings = settings
        self.commit_after = commit_after
        self.heartbeat = heartbeat

    def routes(self) -> list[Route]:
        return [Route("/v1/messages", self.messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"])]

    async def messages(self, request: Request) -> Any:
        req = await parse_body(request, MessagesRequest)
        model = model_name(req.model, self.settings)
        think = req.thinking_enabled
        tools, instruction = engine_tools(req)
        stops = stop_strings(req.stop_sequences)
        message_id = "msg_" + secrets.token_hex(12)
        fmt = req.output_config.format if req.output_config is not None else None
        structured = None if fmt is None else StructuredOutput(
            self.engine, model, OutputFormat(fmt.schema_, "output_config.format.schema"), think, bool(tools))
        messages = conversation(req, instruction)
        if structured is not None:
            messages = structured.instruct(messages)
        gen = GenerationRequest(
            model=model, messages=tuple(messages), tools=tools,
            max_tokens=req.max_tokens,
            sampling=resolve_sampling(self.engine, model, temperature=req.temperature, top_p=req.top_p,
                                      top_k=req.top_k),
            stop=stops, keep_alive=keep_alive_seconds(req.keep_alive), enable_thinking=think,
            request_id=message_id)
        record = record_of(request.scope)
        record.model, record.stream = model, req.stream
        push = ChunkPush() if req.stream else None
        events, headers = start_generation(self.engine, gen, structured,
                                           report_run(self.engine, gen, record), push)
        if req.stream:
            encoder = MessagesStreamEncoder(message_id, model, ReplyParser(think, bool(tools)), stops)
            return EngineStream(events, encoder, "anthropic", record, commit_after=self.commit_after,
                                heartbeat=self.heartbeat, headers=headers, push=push)
        text, done = await collect_reply(request.receive, events, record)
        reply = parse_reply(text, think, bool(tools), structured is not None)
        return JSONResponse(message_body(message_id, model, reply, done, stops),
                            headers=headers)

    async def count_tokens(self, request: Request) -> Any:
        req = await parse_body(request, CountTokensRequest)
        model = model_name(req.model, self.settings)
        tools, instruction = engine_tools(req)
        messages = conversation(req, instruction)
        if self.engine.model(model).runtime not in TOKENIZING_RUNTIMES:
            return JSONResponse({"input_tokens": estimate_prompt(messages, tools)},
                                headers={TOKEN_COUNT_HEADER: "estimate"})
        gen = GenerationRequest(model=model, messages=tuple(messages), tools=tools, max_tokens=1,
                                enable_thinking=req.thinking_enabled,
                                request_id="count_" + secrets.token_hex(12))
        record = record_of(request.scope)
        record.model = model
        _, done = await collect_reply(request.receive, self.engine.generate(gen), record)
        return JSONResponse({"input_tokens": done.usage.prompt_tokens}, headers={TOKEN_COUNT_HEADER: "exact"})
