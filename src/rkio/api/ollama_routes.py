"""Ollama-compatible endpoints: /api/chat, /api/generate, /api/tags, /api/ps, /api/show, /api/version.

As in Ollama: ``stream`` defaults to true; a request without prompt/messages loads the model (``done_reason``
"load") or, with ``keep_alive`` 0, unloads it ("unload"); ``keep_alive`` takes duration strings or seconds.
A trailing ``:latest`` in model names is ignored (rkio has no tags). ``think: true`` splits
``<think>…</think>`` into ``thinking``; ``format`` "json" or a schema is enforced while decoding on llama.cpp
and validated (bounded retries) on rkllm, as ``X-Rkio-Structured-Output`` says (``rkio.api.structured``).
Streams send nothing until the first token.
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rkio import __version__
from rkio.api.access import record_of
from rkio.api.engine_request import (
    decode_image,
    keep_alive_seconds,
    normalize_tool_call,
    parse_body,
    request_id,
    resolve_sampling,
    stop_strings,
)
from rkio.api.errors import BadParameter
from rkio.api.ollama_schema import ChatRequest, GenerateRequest, Message, Options, ShowRequest
from rkio.api.ollama_stream import (
    ChatNdjsonEncoder,
    GenerateNdjsonEncoder,
    chat_message,
    done_fields,
    timestamp,
)
from rkio.api.reply import ReplyParser, parse_reply
from rkio.api.run_report import report_run
from rkio.api.streaming import EngineStream, collect_reply
from rkio.api.structured import StructuredOutput, ollama_format, start_generation
from rkio.config import Settings
from rkio.engine.chunk_push import ChunkPush
from rkio.engine.types import ChatMessage, Engine, GenerationRequest, ModelSpec
from rkio.runtime.base import Sampling

FOREVER = "9999-12-31T23:59:59Z"


def ollama_name(name: str) -> str:
    return name[: -len(":latest")] if name.endswith(":latest") else name


def digest(spec: ModelSpec) -> str:
    """An identity digest of the model file (path, size, mtime), not a content hash (hashing GBs is slow)."""
    return hashlib.sha256(f"{spec.path}\0{spec.size_bytes}\0{spec.mtime_ns}".encode()).hexdigest()


def details(spec: ModelSpec) -> dict[str, Any]:
    """Only what rkio knows; unknown fields stay empty rather than invented."""
    return {"parent_model": "", "format": "rkllm" if spec.runtime == "rkllm" else "gguf", "family": "",
            "families": None, "parameter_size": "", "quantization_level": ""}


def _sampling(engine: Engine, model: str, opts: Options | None) -> Sampling | None:
    if opts is None:
        return None
    return resolve_sampling(engine, model, temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p,
                            repeat_penalty=opts.repeat_penalty, frequency_penalty=opts.frequency_penalty,
                            presence_penalty=opts.presence_penalty, mirostat=opts.mirostat,
                            mirostat_tau=opts.mirostat_tau, mirostat_eta=opts.mirostat_eta, seed=opts.seed)


def _max_tokens(opts: Options | None) -> int | None:
    n = opts.num_predict if opts else None
    return n if n is not None and n > 0 else None  # -1 (infinite) and -2 (fill context): model limit


def chat_messages(messages: list[Message]) -> list[ChatMessage]:
    out = []
    for i, msg in enumerate(messages):
        images = tuple(decode_image(img, f"messages.{i}.images") for img in msg.images or ())
        calls = tuple(normalize_tool_call(c.model_dump()) for c in msg.tool_calls or ())
        out.append(ChatMessage(role=msg.role, content=msg.content, tool_calls=calls, name=msg.tool_name,
                               images=images))
    return out


class OllamaRoutes:
    def __init__(self, engine: Engine, settings: Settings, heartbeat: float) -> None:
        self.engine = engine
        self.settings = settings
        self.heartbeat = heartbeat

    def routes(self) -> list[Route]:
        return [Route("/api/chat", self.chat, methods=["POST"]),
                Route("/api/generate", self.generate, methods=["POST"]),
                Route("/api/tags", self.tags, methods=["GET"]),
                Route("/api/ps", self.ps, methods=["GET"]),
                Route("/api/show", self.show, methods=["POST"]),
                Route("/api/version", self.version, methods=["GET"])]

    def _structured(self, model: str, fmt: Any, think: bool, tools: bool) -> StructuredOutput | None:
        output = ollama_format(fmt)
        return StructuredOutput(self.engine, model, output, think, tools) if output is not None else None

    async def _load_or_unload(self, model: str, keep_alive: float | None, shape: dict[str, Any]) -> Response:
        if keep_alive == 0:
            self.engine.model(model)  # unknown names are a 404 even when nothing is loaded
            await self.engine.unload(model)
            reason = "unload"
        else:
            await self.engine.load(model, keep_alive)
            reason = "load"
        return JSONResponse({"model": model, "created_at": timestamp(), **shape, "done": True,
                             "done_reason": reason})

    async def chat(self, request: Request) -> Any:
        req = await parse_body(request, ChatRequest)
        model, keep_alive = ollama_name(req.model), keep_alive_seconds(req.keep_alive)
        if not req.messages:
            return await self._load_or_unload(model, keep_alive, {"message": {"role": "assistant",
                                                                              "content": ""}})
        tools = tuple(t.model_dump(exclude_none=True) for t in req.tools or ())
        structured = self._structured(model, req.format, req.thinking, bool(tools))
        messages = chat_messages(req.messages)
        if structured is not None:
            messages = structured.instruct(messages)
        gen = GenerationRequest(
            model=model, messages=tuple(messages), tools=tools, max_tokens=_max_tokens(req.options),
            sampling=_sampling(self.engine, model, req.options),
            stop=stop_strings(req.options.stop if req.options else None),
            num_ctx=req.options.num_ctx if req.options else None, keep_alive=keep_alive,
            enable_thinking=req.thinking, request_id=request_id("chat"))
        record = record_of(request.scope)
        record.model, record.stream = model, req.stream
        push = ChunkPush() if req.stream else None
        events, headers = start_generation(self.engine, gen, structured,
                                           report_run(self.engine, gen, record), push)
        if req.stream:
            encoder = ChatNdjsonEncoder(model, ReplyParser(req.thinking, bool(tools)))
            return EngineStream(events, encoder, "ollama", record, heartbeat=self.heartbeat, headers=headers,
                                push=push)
        text, done = await collect_reply(request.receive, events, record)
        reply = parse_reply(text, req.thinking, bool(tools), structured is not None)
        return JSONResponse({"model": model, "created_at": timestamp(), "message": chat_message(reply),
                             **done_fields(done)}, headers=headers)

    async def generate(self, request: Request) -> Any:
        req = await parse_body(request, GenerateRequest)
        model, keep_alive = ollama_name(req.model), keep_alive_seconds(req.keep_alive)
        if not req.prompt and not req.images:
            return await self._load_or_unload(model, keep_alive, {"response": ""})
        images = tuple(decode_image(img, "images") for img in req.images or ())
        structured = self._structured(model, req.format, req.thinking, False)
        common: dict[str, Any] = dict(
            model=model, max_tokens=_max_tokens(req.options),
            sampling=_sampling(self.engine, model, req.options),
            stop=stop_strings(req.options.stop if req.options else None),
            num_ctx=req.options.num_ctx if req.options else None, keep_alive=keep_alive,
            enable_thinking=req.thinking, request_id=request_id("gen"))
        if req.raw:
            if images:
                raise BadParameter("images cannot be combined with raw prompts", "images")
            gen = GenerationRequest(prompt=req.prompt, raw=True, **common)
        else:
            messages = [ChatMessage("system", req.system)] if req.system else []
            messages.append(ChatMessage("user", req.prompt or "", images=images))
            if structured is not None:
                messages = structured.instruct(messages)
            gen = GenerationRequest(messages=tuple(messages), **common)
        record = record_of(request.scope)
        record.model, record.stream = model, req.stream
        push = ChunkPush() if req.stream else None
        events, headers = start_generation(self.engine, gen, structured,
                                           report_run(self.engine, gen, record), push)
        if req.stream:
            encoder = GenerateNdjsonEncoder(model, ReplyParser(req.thinking, False))
            return EngineStream(events, encoder, "ollama", record, heartbeat=self.heartbeat, headers=headers,
                                push=push)
        text, done = await collect_reply(request.receive, events, record)
        reply = parse_reply(text, req.thinking, False, structured is not None)
        body: dict[str, Any] = {"model": model, "created_at": timestamp(), "response": reply.content}
        if reply.reasoning:
            body["thinking"] = reply.reasoning
        return JSONResponse({**body, **done_fields(done)}, headers=headers)

    async def tags(self, request: Request) -> Response:
        models = [{"name": id_, "model": id_, "modified_at": timestamp(s.mtime_ns / 1e9),
                   "size": s.size_bytes, "digest": digest(s), "details": details(s)}
                  for id_, s in request.app.state.readiness.servable_ids()]  # as /v1/models
        return JSONResponse({"models": models})

    async def ps(self, request: Request) -> Response:
        status = self.engine.status()
        specs = {s.name: s for s in self.engine.models()}
        rows = sorted(status.loaded, key=lambda m: float("inf") if m.expires_at is None else m.expires_at,
                      reverse=True)
        models = []
        for m in rows:
            spec = specs.get(m.name)
            models.append({
                "name": m.name, "model": m.name, "size": m.bytes, "size_vram": 0,
                "digest": digest(spec) if spec else "", "details": details(spec) if spec else {},
                "expires_at": FOREVER if m.expires_at is None else timestamp(m.expires_at),
                "context_length": m.max_context_len,
                "rkio": {"state": m.state, "runtime": m.runtime, "pid": m.pid, "rss_bytes": m.rss_bytes,
                         "domains": list(m.domains), "queue_length": m.queue_length, "pinned": m.pinned}})
        return JSONResponse({"models": models})

    async def show(self, request: Request) -> Response:
        req = await parse_body(request, ShowRequest)
        name = req.model or req.name
        if not name:
            raise BadParameter("model is required", "model")
        spec = self.engine.model(ollama_name(name))
        s = spec.load.sampling
        params = (("temperature", s.temperature), ("top_k", s.top_k), ("top_p", s.top_p),
                  ("repeat_penalty", s.repeat_penalty), ("num_ctx", spec.load.max_context_len),
                  ("num_predict", spec.load.max_new_tokens))
        parameters = "\n".join(f"{k} {v}" for k, v in params)
        return JSONResponse({
            "modelfile": f"FROM {spec.path}\n", "parameters": parameters,
            "template": spec.chat_template or "",
            "system": spec.system_prompt or "", "details": details(spec),
            "model_info": {"rkio.path": spec.path, "rkio.runtime": spec.runtime,
                           "rkio.max_context_len": spec.load.max_context_len,
                           "rkio.max_context_limit": spec.max_context_limit},
            "capabilities": ["completion", "tools"], "modified_at": timestamp(spec.mtime_ns / 1e9)})

    async def version(self, request: Request) -> Response:
        return JSONResponse({"version": __version__})

