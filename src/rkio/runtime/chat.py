"""Chat templates: turning a conversation into the one prompt string a model was trained on.

Templates are Hugging Face-style Jinja (the dialect of ``tokenizer_config.json`` and of a GGUF's
``tokenizer.chat_template``), rendered in a sandbox because they come from model files and users.
The presets live in ``rkio.runtime.chat_presets``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rkio.errors import InvalidRequest
from rkio.runtime.base import ChatMessage
from rkio.runtime.chat_presets import KNOWN_END_MARKERS, PRESETS, STOP_STRINGS

DEFAULT_PRESET = "chatml"

# Presets recognised by their end-of-turn marker being one token of a model's vocabulary, most
# specific first (ChatML vocabularies can contain <|endoftext|> but not <end_of_turn>).
_PRESET_MARKERS = (
    ("gemma", "<end_of_turn>"),
    ("llama3", "<|eot_id|>"),
    ("chatml", "<|im_end|>"),
    ("deepseek", "<｜end▁of▁sentence｜>"),
    ("phi3", "<|end|>"),
)


class TemplateError(InvalidRequest):
    """The template does not compile, or refused the conversation (``raise_exception``)."""

    kind = "chat_template_error"


def _raise_exception(message: str) -> None:
    raise TemplateError(f"chat template: {message}")


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    # Jinja's own tojson HTML-escapes '<' and '&'; HF templates expect plain JSON.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _environment() -> ImmutableSandboxedEnvironment:
    # The same settings transformers uses, so templates written for it render identically.
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


_ENV = _environment()


def _arguments(value: Any) -> Any:
    """Tool-call arguments as a mapping when they are a JSON object string (templates ``tojson`` them)."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


def _tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function", call)
    arguments = _arguments(function.get("arguments", {}))
    out: dict[str, Any] = {
        "type": call.get("type", "function"),
        "function": {"name": function.get("name", ""), "arguments": arguments},
    }
    if "id" in call:
        out["id"] = call["id"]
    return out


def guess_preset(architecture: str | None, is_special_token: Callable[[str], bool]) -> str | None:
    """The preset of a model file that carries no template, from the turn markers its vocabulary has.

    A vocabulary without any known marker (a base model) gets None rather than a wrong guess.
    """
    for preset, marker in _PRESET_MARKERS:
        if is_special_token(marker):
            return "qwen3" if preset == "chatml" and architecture in ("qwen3", "qwen3moe") else preset
    return None


def message_dict(message: ChatMessage) -> dict[str, Any]:
    """The HF-style dict a template sees for one message."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [_tool_call(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        out["name"] = message.name
    return out


class ChatTemplate:
    """A compiled chat template with the strings that end a model's turn."""

    def __init__(self, source: str, name: str, stop_strings: tuple[str, ...], bos_token: str = "",
                 eos_token: str = "") -> None:
        try:
            self._template = _ENV.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"chat template {name} does not compile: {exc.message} "
                                f"(line {exc.lineno})") from exc
        self.source = source
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.stop_strings = stop_strings

    @classmethod
    def from_source(cls, source_or_preset: str, bos_token: str = "", eos_token: str = "") -> ChatTemplate:
        """A preset by name ("chatml", "qwen3", "llama3", "gemma", "phi3", "deepseek") or Jinja source.

        For Jinja source the stop strings are the known end-of-turn markers the template emits, plus
        ``eos_token``.
        """
        key = source_or_preset.strip().lower()
        if key in PRESETS:
            stops = STOP_STRINGS[key]
            if eos_token and eos_token not in stops:
                stops = (*stops, eos_token)
            return cls(PRESETS[key], key, stops, bos_token, eos_token)
        found = [marker for marker in KNOWN_END_MARKERS if marker in source_or_preset]
        if eos_token and eos_token not in found:
            found.append(eos_token)
        return cls(source_or_preset, "custom", tuple(found), bos_token, eos_token)

    @classmethod
    def default(cls) -> ChatTemplate:
        return cls.from_source(DEFAULT_PRESET)

    @staticmethod
    def presets() -> tuple[str, ...]:
        return tuple(PRESETS)

    def render(self, messages: Sequence[ChatMessage], tools: Sequence[Mapping[str, Any]] = (),
               add_generation_prompt: bool = True, enable_thinking: bool = False) -> str:
        """The prompt for ``messages``; raises ``TemplateError`` when the template rejects them."""
        try:
            return self._template.render(
                messages=[message_dict(m) for m in messages],
                tools=[dict(t) for t in tools] or None,
                add_generation_prompt=add_generation_prompt,
                enable_thinking=enable_thinking,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except TemplateError:
            raise
        except jinja2.TemplateError as exc:
            raise TemplateError(f"chat template {self.name} failed: {exc}") from exc
        except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
            raise TemplateError(f"chat template {self.name} failed on this conversation: {exc}") from exc

    def __repr__(self) -> str:
        return f"ChatTemplate({self.name!r}, stop_strings={self.stop_strings!r})"
