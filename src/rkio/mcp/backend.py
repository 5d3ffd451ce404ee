"""What the MCP tools need from rkio, as one small protocol with typed calls and results.

Two implementations: ``EngineBackend`` (the in-process engine, for ``/mcp`` on the HTTP server) and
``RpcBackend`` (the running server's JSON-RPC Unix socket, for ``rkio mcp`` over stdio). The result models
double as the tools' MCP output schemas, so their field descriptions are what a model reads.
Backends raise ``RkioError`` subclasses; the tools turn them into MCP tool errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from rkio.errors import RkioError


class Turn(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant"] = Field(description="who wrote this message")
    content: str = Field(description="the message text")


@dataclass(frozen=True, slots=True)
class Options:
    """Per-call generation options; None leaves the model's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatCall:
    model: str
    messages: tuple[Turn, ...]
    options: Options


@dataclass(frozen=True, slots=True)
class GenerateCall:
    model: str
    prompt: str
    raw: bool
    options: Options


class TokenUsage(BaseModel):
    prompt_tokens: int = Field(description="tokens in the prompt the model read")
    completion_tokens: int = Field(description="tokens the model generated")


class Completion(BaseModel):
    """The reply of ``chat`` and ``generate``."""

    model: str = Field(description="the model that answered")
    text: str = Field(description="the generated text")
    finish_reason: Literal["stop", "length"] = Field(
        description="stop: the model ended its reply (or a stop string matched); length: max_tokens reached")
    usage: TokenUsage


class ModelEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(description="the name to pass as `model`")
    size: int = Field(description="model file size in bytes")
    format: Literal["rkllm", "gguf"] = Field(description="rkllm: runs on the NPU; gguf: runs on the CPU")
    loaded: bool = Field(description="resident now (a call to it starts without loading)")
    context: int = Field(description="context length in tokens (prompt + reply) when loaded")


class ModelList(BaseModel):
    models: list[ModelEntry]


class LoadedInfo(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    runtime: str = Field(description="rkllm (NPU) or llamacpp (CPU)")
    state: str = Field(description="loading, idle, busy or stopping")
    bytes: int = Field(description="memory accounted to the model")
    max_context_len: int
    queue_length: int = Field(description="requests waiting for this model")
    pinned: bool
    leases: int


class StatusReport(BaseModel):
    """The engine's state: what is loaded, the memory budget, the queue."""

    model_config = ConfigDict(extra="ignore")
    loaded: list[LoadedInfo] = Field(description="models resident now")
    budget_bytes: int = Field(description="memory rkio may use for models")
    used_bytes: int
    free_bytes: int
    queue_length: int = Field(description="requests waiting, all models")
    running: int = Field(description="generations running now")
    npu_lanes: int = Field(description="generations the NPU runs at once")
    quarantined: list[str] = Field(default_factory=list, description="models refused after repeated crashes")
    counters: dict[str, int] = Field(default_factory=dict)


Progress = Callable[[int, str | None], Awaitable[None]]
"""Told the number of tokens generated so far, with a message while the call waits (queue, load)."""


class RemoteError(RkioError):
    """An error the rkio server reported (or the failure to reach it), with its explanation."""

    def __init__(self, message: str, kind: str = "server_error") -> None:
        super().__init__(message)
        self.kind = kind


class ToolBackend(Protocol):
    async def chat(self, call: ChatCall, progress: Progress) -> Completion: ...
    async def generate(self, call: GenerateCall, progress: Progress) -> Completion: ...
    async def list_models(self) -> ModelList: ...
    async def status(self) -> StatusReport: ...

