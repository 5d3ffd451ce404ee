"""OpenAI-compatible endpoints: /v1/chat/completions, /v1/completions, /v1/models[/{id}].

Thinking: when the request asks for it (``reasoning_effort`` set to anything but "none", or ``think`` /
``enable_thinking`` / ``chat_template_kwargs.enable_thinking`` true), the engine is asked to think and
``<think>…</think>`` at the start of the reply is returned as ``reasoning_content``, not ``content``.
Tools: ``tools`` go to the engine (the chat template renders them) unless ``tool_choice`` is "none"; the reply
is scanned for ``<tool_call>{…}</tool_call>`` or a bare ``{"name", "arguments"}`` object.
``response_format`` json_object / json_schema: enforced while decoding on llama.cpp, validated (with bounded
retries) on rkllm; the ``X-Rkio-Structured-Output`` header says which (``rkio.api.structured``).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rkio.api.access import record_of
from rkio.api.engine_request import (
    decode_image,
    keep_alive_seconds,
    model_name,
    normalize_tool_call,
    parse_body,
    request_id,
    resolve_sampling,
    select_tools,
    stop_strings,
    with_system_text,
)
from rkio.api.errors import BadParameter
from rkio.api.image_urls import fetch_image_urls
from rkio.api.openai_schema import ChatCompletionRequest, ChatMessageIn, CompletionRequest, SamplingFields
from rkio.api.openai_stream import (
    ChatStreamEncoder,
    CompletionStreamEncoder,
    chat_completion_body,
    completion_body,
)
from rkio.api.reply import ReplyParser, parse_reply
from rkio.api.run_report import report_run
from rkio.api.streaming import EngineStream, collect_reply
from rkio.api.structured import StructuredOutput, openai_format, start_generation
from rkio.config import Settings
from rkio.engine.chunk_push import ChunkPush
from rkio.engine.types import ChatMessage, Engine, GenerationRequest
from rkio.runtime.base import Sampling

_ROLES = {"developer": "system", "function": "tool"}


def thinking_requested(req: ChatCompletionRequest) -> bool:
    for flag in (req.think, req.enable_thinking, (req.chat_template_kwargs or {}).get("enable_thinking")):
        if flag is not None:
            return bool(flag)
    return req.reasoning_effort is not None and req.reasoning_effort.strip().lower() not in ("", "none")


def chat_messages(messages: list[ChatMessageIn]) -> list[ChatMessage]:
    """OpenAI messages -> engine messages, the whole history in order (text parts joined, images decoded)."""
    out = []
    for i, msg in enumerate(messages):
        images: list[bytes] = []
        if isinstance(msg.content, list):
            texts = []
            for j, part in enumerate(msg.content):
                if part.type == "text":
                    texts.append(part.text or "")
                elif part.type == "image_url" and part.image_url is not None:
                    images.append(decode_image(part.image_url.url, f"messages.{i}.content.{j}.image_url"))
                else:
                    raise BadParameter(f"unsupported content part type {part.type!r}",
                                       f"messages.{i}.content")
            content = "\n".join(texts)
        else:
            content = msg.content or ""
        calls = tuple(normalize_tool_call(c.model_dump()) for c in msg.tool_calls or ())
        out.append(ChatMessage(role=_ROLES.get(msg.role, msg.role), content=content, tool_calls=calls,
                               tool_call_id=msg.tool_call_id, name=msg.name, images=tuple(images)))
    return out


def _check_common(req: SamplingFields) -> None:
    if (req.n or 1) != 1:
        raise BadParameter("only n=1 is supported", "n")


def _sampling(engine: Engine, model: str, req: SamplingFields) -> Sampling | None:
    return resolve_sampling(engine, model, temperature=req.temperature, top_p=req.top_p, top_k=req.top_k,
                            repeat_penalty=req.repeat_penalty, frequency_penalty=req.frequency_penalty,
                            presence_penalty=req.presence_penalty, seed=req.seed)


def _tools(req: ChatCompletionRequest) -> tuple[tuple[dict[str, Any], ...], str | None]:
    """Tools for the engine, and an extra system instruction ``tool_choice`` calls for."""
    tools = [t.model_dump(exclude_none=True) for t in req.tools or ()]
    choice = req.tool_choice
    if isinstance(choice, dict):
        choice = str((choice.get("function") or {}).get("name"))
    return select_tools(tools, choice)


class OpenAIRoutes:
    def __init__(self, engine: Engine, settings: Settings, commit_after: float, heartbeat: float) -> None:
        self.engine = engine
        self.settings = settings
        self.commit_after = commit_after
        self.heartbeat = heartbeat

    def routes(self) -> list[Route]:
        return [Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/completions", self.completions, methods=["POST"]),
                Route("/v1/models", self.list_models, methods=["GET"]),
                Route("/v1/models/{model_id:path}", self.get_model, methods=["GET"])]

    async def chat(self, request: Request) -> Any:
        req = await parse_body(request, ChatCompletionRequest)
        model = model_name(req.model, self.settings)
        _check_common(req)
        if req.logprobs:
            raise BadParameter("logprobs are not supported", "logprobs")
        think = thinking_requested(req)
        tools, tool_instruction = _tools(req)
        await fetch_image_urls(req.messages, self.settings.image_urls)
        messages = chat_messages(req.messages)
        fmt = req.response_format
        output = openai_format(fmt.type, fmt.json_schema) if fmt is not None else None
        structured = StructuredOutput(self.engine, model, output, think, bool(tools)) if output else None
        if structured is not None:
            messages = structured.instruct(messages)
        if tool_instruction:
            messages = with_system_text(messages, tool_instruction)
        cid, created = request_id("chatcmpl"), int(time.time())
        gen = GenerationRequest(
            model=model, messages=tuple(messages), tools=tools,
            max_tokens=req.max_completion_tokens or req.max_tokens,
            sampling=_sampling(self.engine, model, req),
            stop=stop_strings(req.stop), keep_alive=keep_alive_seconds(req.keep_alive), enable_thinking=think,
            request_id=cid)
        record = record_of(request.scope)
        record.model, record.stream = model, req.stream
        push = ChunkPush() if req.stream else None
        events, headers = start_generation(self.engine, gen, structured,
                                           report_run(self.engine, gen, record), push)
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            encoder = ChatStreamEncoder(cid, created, model, include_usage, ReplyParser(think, bool(tools)))
            return EngineStream(events, encoder, "openai", record, commit_after=self.commit_after,
                                heartbeat=self.heartbeat, headers=headers, push=push)
        text, done = await collect_reply(request.receive, events, record)
        reply = parse_reply(text, think, bool(tools), structured is not None)
        return JSONResponse(chat_completion_body(cid, created, model, reply, done),
                            headers=headers)

    async def completions(self, request: Request) -> Any:
        req = await parse_body(request, CompletionRequest)
        model = model_name(req.model, self.settings)
        _check_common(req)
        if isinstance(req.prompt, list) and len(req.prompt) != 1:
            raise BadParameter("exactly one prompt is supported", "prompt")
        if req.logprobs:
            raise BadParameter("logprobs are not supported", "logprobs")
        prompt = req.prompt_text
        cid, created = request_id("cmpl"), int(time.time())
        gen = GenerationRequest(
            model=model, prompt=prompt, raw=True, max_tokens=req.max_tokens,
            sampling=_sampling(self.engine, model, req), stop=stop_strings(req.stop),
            keep_alive=keep_alive_seconds(req.keep_alive), request_id=cid)
        record = record_of(request.scope)
        record.model, record.stream = model, req.stream
        headers = report_run(self.engine, gen, record)
        push = ChunkPush() if req.stream else None
        events = self.engine.generate(gen, push)
        echo = prompt if req.echo else ""
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            encoder = CompletionStreamEncoder(cid, created, model, include_usage, echo)
            return EngineStream(events, encoder, "openai", record, commit_after=self.commit_after,
                                heartbeat=self.heartbeat, headers=headers, push=push)
        text, done = await collect_reply(request.receive, events, record)
        return JSONResponse(completion_body(cid, created, model, echo + text, done), headers=headers)

    async def list_models(self, request: Request) -> Response:
        servable = request.app.state.readiness.servable_ids()  # only what this board can run
        return JSONResponse({"object": "list", "data": [_model_body(id_, s.mtime_ns, s.runtime)
                                                        for id_, s in servable]})

    async def get_model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        spec = self.engine.model(model_id)  # a LoRA variant base:adapter is listed under its own id
        name = model_id if ":" in model_id else spec.name
        return JSONResponse(_model_body(name, spec.mtime_ns, spec.runtime))


def _model_body(name: str, mtime_ns: int, runtime: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": mtime_ns // 1_000_000_000,
            "owned_by": f"rkio ({runtime})"}

