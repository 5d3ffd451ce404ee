"""Request bodies of the Anthropic Messages endpoints (pydantic; unknown fields are accepted and ignored).

Content blocks are one model with a ``type`` tag rather than a union: an unknown block type gets a clear
400 from the route instead of a wall of union-mismatch errors.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageSource(_Body):
    type: str
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ContentBlock(_Body):
    """text | image | tool_use | tool_result | thinking | redacted_thinking (others are refused)."""

    type: str
    text: str | None = None
    source: ImageSource | None = None
    id: str | None = None  # tool_use
    name: str | None = None  # tool_use
    input: dict[str, Any] | None = None  # tool_use
    tool_use_id: str | None = None  # tool_result
    content: str | list[ContentBlock] | None = None  # tool_result
    is_error: bool | None = None  # tool_result
    thinking: str | None = None


class MessageIn(_Body):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class SystemBlock(_Body):
    type: Literal["text"] = "text"
    text: str


class ToolIn(_Body):
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class ToolChoice(_Body):
    type: Literal["auto", "any", "tool", "none"] = "auto"
    name: str | None = None


class ThinkingConfig(_Body):
    type: str = "disabled"  # enabled | adaptive | between_tools | disabled: all but disabled think
    budget_tokens: int | None = None


class OutputFormat(_Body):
    type: Literal["json_schema"] = "json_schema"
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Body):
    format: OutputFormat | None = None
    effort: str | None = None  # accepted, no effect: a local model has one effort


class CountTokensRequest(_Body):
    model: str = Field(default="", max_length=512)  # empty: settings.default_model
    messages: list[MessageIn] = Field(min_length=1)
    system: str | list[SystemBlock] | None = None
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None

    @property
    def thinking_enabled(self) -> bool:
        return self.thinking is not None and self.thinking.type != "disabled"


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1)  # required, as in Anthropic's API
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    stream: bool = False
    metadata: dict[str, Any] | None = None
    keep_alive: str | float | None = None  # rkio extension, as on the other APIs
    output_config: OutputConfig | None = None
