"""Helpers both API flavours use to turn request fields into a ``GenerationRequest``."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import replace
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.requests import Request

from rkio.api.errors import BadParameter
from rkio.config import Settings
from rkio.engine.types import ChatMessage, Engine
from rkio.runtime.base import Sampling
from rkio.units import parse_duration

MAX_STOP_STRINGS = 16


def request_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def model_name(requested: str | None, settings: Settings) -> str:
    """The requested model, or the configured default; 400 when neither exists."""
    name = (requested or "").strip() or settings.default_model
    if not name:
        raise BadParameter("model is required", "model")
    return name


def resolve_sampling(engine: Engine, model: str, **overrides: Any) -> Sampling | None:
    """The model's sampling defaults with the request's overrides applied; None when nothing is overridden."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return None
    return replace(engine.model(model).load.sampling, **given)


def keep_alive_seconds(value: str | float | int | None) -> float | None:
    """Ollama's keep_alive: duration string ("5m", "1h", "-1") or a number of seconds; None = default."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadParameter("keep_alive must be a duration like \"5m\" or a number of seconds", "keep_alive")
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise BadParameter(f"keep_alive: {exc}", "keep_alive") from exc


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    items = [stop] if isinstance(stop, str) else list(stop or ())
    items = [s for s in items if s]
    if len(items) > MAX_STOP_STRINGS:
        raise BadParameter(f"at most {MAX_STOP_STRINGS} stop strings are supported", "stop")
    return tuple(items)


def decode_image(data: str, param: str) -> bytes:
    """Base64 image data, optionally as a ``data:`` URL. Remote URLs are not fetched."""
    if data.startswith("data:"):
        _, sep, data = data.partition(",")
        if not sep:
            raise BadParameter("malformed data: URL", param)
    elif data.startswith(("http://", "https://")):
        raise BadParameter("image URLs are not fetched; send the image as base64 data", param)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadParameter(f"image is not valid base64: {exc}", param) from exc


def with_system_text(messages: list[ChatMessage], text: str) -> list[ChatMessage]:
    """Add ``text`` to the system message (creating one first in line if there is none)."""
    if messages and messages[0].role == "system":
        first = messages[0]
        content = f"{first.content}\n\n{text}" if first.content else text
        return [replace(first, content=content), *messages[1:]]
    return [ChatMessage(role="system", content=text), *messages]


def normalize_tool_call(call: dict[str, Any]) -> dict[str, Any]:
    """A history tool call in the shape chat templates expect: arguments as an object, not a JSON string."""
    function = dict(call.get("function") or {})
    args = function.get("arguments")
    if isinstance(args, str):
        try:
            parsed = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            parsed = args
        function["arguments"] = parsed
    out: dict[str, Any] = {"type": "function", "function": function}
    if call.get("id"):
        out["id"] = call["id"]
    return out


def select_tools(tools: list[dict[str, Any]], choice: str | None,
                 param: str = "tool_choice") -> tuple[tuple[dict[str, Any], ...], str | None]:
    """Tools (OpenAI function shape) for the engine and the system instruction a tool choice calls for.

    ``choice``: None or "auto" (the model decides), "none" (no tools), "required" (some tool), or the name
    of the one function to call.
    """
    if not tools or choice == "none":
        return (), None
    if choice in (None, "auto"):
        return tuple(tools), None
    if choice == "required":
        return tuple(tools), "You must call one of the provided functions."
    chosen = tuple(t for t in tools if t["function"]["name"] == choice)
    if not chosen:
        raise BadParameter(f"{param} names an unknown function {choice!r}", param)
    return chosen, f"You must call the function {choice}."


BodyT = TypeVar("BodyT", bound=BaseModel)


async def parse_body(request: Request, schema: type[BodyT]) -> BodyT:
    """Validate the JSON body (malformed JSON and wrong types become 400s through ``rkio.api.errors``)."""
    body = await request.body()
    if not body.strip():
        raise BadParameter("request body is empty; a JSON object is expected")
    return schema.model_validate_json(body)
