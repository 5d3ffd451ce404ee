"""rkio's own methods for simple clients and MCP: ``rkio.chat``, ``rkio.generate``, ``rkio.list_models``,
``rkio.status``. They go through the same engine queue as every HTTP request."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rkio.api.engine_request import request_id, resolve_sampling, stop_strings
from rkio.api.jsonrpc.delivery import deliver
from rkio.api.jsonrpc.dispatcher import CallContext, Handler
from rkio.api.jsonrpc.params import validate
from rkio.api.jsonrpc.streams import RunOutcome
from rkio.engine.types import ChatMessage, Engine, GenerationRequest, ModelSpec


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class GenerationFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stop: str | list[str] | None = None
    stream: bool | Literal["callbacks"] | None = None


class ChatParams(GenerationFields):
    messages: list[Message] = Field(min_length=1)


class GenerateParams(GenerationFields):
    prompt: str
    raw: bool = False


def model_entry(spec: ModelSpec, loaded: set[str]) -> dict[str, Any]:
    return {
        "name": spec.name,
        "size": spec.size_bytes,
        "format": "gguf" if spec.runtime == "llamacpp" else "rkllm",
        "loaded": spec.name in loaded,
        "context": spec.load.max_context_len,
        "runtime": spec.runtime,
    }


class HighLevelMethods:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def handlers(self) -> dict[str, Handler]:
        return {
            "rkio.chat": self.chat,
            "rkio.generate": self.generate,
            "rkio.list_models": self.list_models,
            "rkio.status": self.status,
        }

    async def chat(self, ctx: CallContext) -> Any:
        if "stream_id" in ctx.params:
            return {"chunks": ctx.pulls.pull(ctx.params["stream_id"])}
        params = validate(ChatParams, ctx.params)
        messages = tuple(ChatMessage(role=m.role, content=m.content) for m in params.messages)
        return await self._run(
            ctx, params, GenerationRequest(model=params.model, messages=messages, **self._common(params))
        )

    async def generate(self, ctx: CallContext) -> Any:
        if "stream_id" in ctx.params:
            return {"chunks": ctx.pulls.pull(ctx.params["stream_id"])}
        params = validate(GenerateParams, ctx.params)
        return await self._run(
            ctx,
            params,
            GenerationRequest(
                model=params.model, prompt=params.prompt, raw=params.raw, **self._common(params)
            ),
        )

    def _common(self, params: GenerationFields) -> dict[str, Any]:
        return {
            "max_tokens": params.max_tokens,
            "stop": stop_strings(params.stop),
            "sampling": resolve_sampling(
                self.engine,
                params.model,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
            ),
            "request_id": request_id("rpc"),
        }

    async def _run(self, ctx: CallContext, params: GenerationFields, request: GenerationRequest) -> Any:
        form = ctx.stream_form(bool(params.stream) if params.stream != "callbacks" else True)
        if form == "callbacks":
            form = "push"  # callbacks (and --rpc-stream-default) are rkllm.run's; these push notifications

        def result_of(outcome: RunOutcome) -> dict[str, Any]:
            usage = outcome.done.usage if outcome.done is not None else None
            return {
                "model": request.model,
                "text": outcome.text,
                "finish_reason": outcome.finish_reason,
                "usage": {
                    "prompt_tokens": usage.prompt_tokens if usage else 0,
                    "completion_tokens": usage.completion_tokens if usage else len(outcome.token_ids),
                },
            }

        return await deliver(ctx, form, self.engine.generate(request), result_of)

    async def list_models(self, ctx: CallContext) -> dict[str, Any]:
        loaded = {m.name for m in self.engine.status().loaded}
        return {"models": [model_entry(spec, loaded) for spec in self.engine.models()]}

    async def status(self, ctx: CallContext) -> dict[str, Any]:
        return dataclasses.asdict(self.engine.status())
