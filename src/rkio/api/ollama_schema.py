"""Request bodies of the Ollama-compatible endpoints (pydantic; unknown fields are accepted and ignored)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rkio.api.openai_schema import ToolDef


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class Options(_Body):
    """The subset of Ollama's options that maps onto rkio; others (num_gpu, num_thread, ...) are ignored."""

    num_ctx: int | None = Field(default=None, ge=1, le=1 << 20)
    num_predict: int | None = Field(default=None, ge=-2)
    temperature: float | None = Field(default=None, ge=0.0, le=100.0)
    top_k: int | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, gt=0.0)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    mirostat: int | None = Field(default=None, ge=0, le=2)
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None


class FunctionCall(_Body):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class ToolCallIn(_Body):
    function: FunctionCall


class Message(_Body):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[ToolCallIn] | None = None
    thinking: str | None = None
    tool_name: str | None = None


class _Generation(_Body):
    model: str = Field(min_length=1, max_length=512)
    stream: bool = True  # Ollama streams unless told otherwise
    format: Literal["", "json"] | dict[str, Any] | None = None
    options: Options | None = None
    keep_alive: str | float | None = None
    think: bool | Literal["high", "medium", "low"] | None = None

    @property
    def thinking(self) -> bool:
        return bool(self.think)


class ChatRequest(_Generation):
    messages: list[Message] = Field(default_factory=list)
    tools: list[ToolDef] | None = None


class GenerateRequest(_Generation):
    prompt: str | None = None
    system: str | None = None
    raw: bool = False
    images: list[str] | None = None
    suffix: str | None = None
    template: str | None = None
    context: list[int] | None = None


class ShowRequest(_Body):
    model: str | None = Field(default=None, max_length=512)
    name: str | None = Field(default=None, max_length=512)  # older clients
    verbose: bool = False
