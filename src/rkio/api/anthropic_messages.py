"""Anthropic Messages input -> the engine's conversation: system, text, images, tool_use and tool_result.

A user turn's ``tool_result`` blocks become ``tool`` messages (named after the ``tool_use`` they answer, so
chat templates that print the tool's name can), followed by the turn's own text if it has any. An
assistant turn's ``tool_use`` blocks become its ``tool_calls``. ``thinking`` blocks of earlier turns are
not shown to the model again (Anthropic drops them from the context too).
"""

from __future__ import annotations

from typing import Any

from rkio.api.anthropic_schema import ContentBlock, CountTokensRequest, MessageIn, SystemBlock, ToolIn
from rkio.api.engine_request import decode_image, select_tools
from rkio.api.errors import BadParameter
from rkio.engine.types import ChatMessage

_SKIPPED = frozenset({"thinking", "redacted_thinking"})


def system_text(system: str | list[SystemBlock] | None) -> str:
    if system is None:
        return ""
    return system if isinstance(system, str) else "\n".join(b.text for b in system)


def _image(block: ContentBlock, param: str) -> bytes:
    source = block.source
    if source is None:
        raise BadParameter("an image block needs a source", param)
    if source.type != "base64" or source.data is None:
        raise BadParameter("image URLs are not fetched; send the image as base64 data", param)
    return decode_image(source.data, param)


def _result_text(block: ContentBlock, param: str) -> str:
    content = block.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        parts = []
        for j, part in enumerate(content):
            if part.type != "text":
                raise BadParameter(f"tool_result content supports text blocks only, not {part.type!r}",
                                   f"{param}.content.{j}")
            parts.append(part.text or "")
        text = "\n".join(parts)
    return f"Error: {text}" if block.is_error else text


def _turn(msg: MessageIn, i: int, tool_names: dict[str, str]) -> list[ChatMessage]:
    if isinstance(msg.content, str):
        return [ChatMessage(role=msg.role, content=msg.content)]
    texts: list[str] = []
    images: list[bytes] = []
    calls: list[dict[str, Any]] = []
    results: list[ChatMessage] = []
    for j, block in enumerate(msg.content):
        param = f"messages.{i}.content.{j}"
        if block.type == "text":
            texts.append(block.text or "")
        elif block.type == "image" and msg.role == "user":
            images.append(_image(block, param))
        elif block.type == "tool_use" and msg.role == "assistant":
            if not block.id or not block.name:
                raise BadParameter("a tool_use block needs an id and a name", param)
            tool_names[block.id] = block.name
            calls.append({"type": "function", "id": block.id,
                          "function": {"name": block.name, "arguments": block.input or {}}})
        elif block.type == "tool_result" and msg.role == "user":
            if not block.tool_use_id:
                raise BadParameter("a tool_result block needs a tool_use_id", param)
            name = tool_names.get(block.tool_use_id)
            results.append(ChatMessage(role="tool", content=_result_text(block, param),
                                       tool_call_id=block.tool_use_id, name=name))
        elif block.type not in _SKIPPED:
            raise BadParameter(f"unsupported content block type {block.type!r} in a {msg.role} message",
                               param)
    out = results
    if texts or images or calls or not results:
        out.append(ChatMessage(role=msg.role, content="\n".join(texts), tool_calls=tuple(calls),
                               images=tuple(images)))
    return out


def conversation(req: CountTokensRequest, extra_system: str | None = None) -> list[ChatMessage]:
    """The whole history in order, the system prompt (and ``extra_system``, e.g. a tool choice) first."""
    system = "\n\n".join(t for t in (system_text(req.system), extra_system or "") if t)
    out = [ChatMessage(role="system", content=system)] if system else []
    tool_names: dict[str, str] = {}
    for i, msg in enumerate(req.messages):
        out.extend(_turn(msg, i, tool_names))
    return out


def engine_tools(req: CountTokensRequest) -> tuple[tuple[dict[str, Any], ...], str | None]:
    """The tools in the function shape chat templates render, and the instruction ``tool_choice`` implies."""
    tools = [_function(t) for t in req.tools or ()]
    choice = req.tool_choice
    if choice is None or choice.type == "auto":
        return select_tools(tools, None)
    if choice.type == "tool":
        if not choice.name:
            raise BadParameter("tool_choice of type tool needs a name", "tool_choice.name")
        return select_tools(tools, choice.name)
    return select_tools(tools, "required" if choice.type == "any" else "none")


def _function(tool: ToolIn) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}
