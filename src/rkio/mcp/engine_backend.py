"""The MCP tools' backend on the in-process engine (``/mcp`` on the HTTP server).

A tool call is one ``Engine.generate``: admission, queueing and crash isolation are the engine's. When the
MCP client cancels, the SDK cancels the call's task; the generation's iterator is then closed, which the
engine turns into an abort that frees the lane.
"""

from __future__ import annotations

import dataclasses

from rkio.api.engine_request import request_id, resolve_sampling, stop_strings
from rkio.api.jsonrpc.highlevel import model_entry
from rkio.api.streaming import close_events
from rkio.engine.types import ChatMessage, Done, Engine, GenerationRequest, Loading, Queued, TokenChunk
from rkio.errors import RuntimeFailure
from rkio.mcp.backend import (
    ChatCall,
    Completion,
    GenerateCall,
    ModelList,
    Options,
    Progress,
    StatusReport,
    TokenUsage,
)


def waiting_message(event: Queued | Loading) -> str:
    if isinstance(event, Loading):
        return f"loading {event.model}"
    return "next in the queue" if event.position == 0 else f"queued, {event.position} ahead"


class EngineBackend:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _request(self, model: str, options: Options, *, messages: tuple[ChatMessage, ...] | None = None,
                 prompt: str | None = None, raw: bool = False) -> GenerationRequest:
        sampling = resolve_sampling(self.engine, model, temperature=options.temperature,
                                    top_p=options.top_p, top_k=options.top_k)
        return GenerationRequest(model=model, messages=messages, prompt=prompt, raw=raw,
                                 max_tokens=options.max_tokens, sampling=sampling,
                                 stop=stop_strings(list(options.stop)), request_id=request_id("mcp"))

    async def chat(self, call: ChatCall, progress: Progress) -> Completion:
        messages = tuple(ChatMessage(role=m.role, content=m.content) for m in call.messages)
        return await self._run(self._request(call.model, call.options, messages=messages), progress)

    async def generate(self, call: GenerateCall, progress: Progress) -> Completion:
        request = self._request(call.model, call.options, prompt=call.prompt, raw=call.raw)
        return await self._run(request, progress)

    async def _run(self, request: GenerationRequest, progress: Progress) -> Completion:
        parts: list[str] = []
        tokens = 0
        events = self.engine.generate(request)
        finished = False
        try:
            async for event in events:
                if isinstance(event, TokenChunk):
                    parts.append(event.text)
                    tokens += len(event.token_ids)
                    await progress(tokens, None)
                elif isinstance(event, Done):
                    finished = True
                    usage = TokenUsage(prompt_tokens=event.usage.prompt_tokens,
                                       completion_tokens=event.usage.completion_tokens)
                    return Completion(model=request.model, text="".join(parts),
                                      finish_reason=event.finish_reason, usage=usage)
                else:
                    await progress(tokens, waiting_message(event))
        finally:  # a cancelled call closes the iterator at once, which aborts the generation
            await close_events(events, finished)
        raise RuntimeFailure("the engine ended the generation without a result")

    async def list_models(self) -> ModelList:
        # The same entries as the JSON-RPC rkio.list_models, so both MCP transports answer alike.
        loaded = {m.name for m in self.engine.status().loaded}
        entries = [model_entry(spec, loaded) for spec in self.engine.models()]
        return ModelList.model_validate({"models": entries})

    async def status(self) -> StatusReport:
        return StatusReport.model_validate(dataclasses.asdict(self.engine.status()))
