"""Structured output: OpenAI ``response_format`` and Ollama ``format``, enforced or validated.

On runtimes that can constrain decoding (llama.cpp: a grammar built from the schema) the schema travels to
the runtime in ``GenerationRequest.json_schema`` and the reply cannot leave it ("enforced"). rkllm has no
constrained decoding: the reply is checked against the schema with ``jsonschema``; a reply that fails is
answered with the error fed back to the model, at most ``MAX_RETRIES`` times, and then the request fails with
``OutputInvalid`` ("validated" / "validated after N retries"). Both modes also ask for JSON in the system
prompt. The mode goes back to the client in the ``X-Rkio-Structured-Output`` header.

A validated reply is held back until it passed: a stream shows nothing before that. ``json_object`` and
Ollama's ``"json"`` mean "a JSON object", like the grammar llama.cpp enforces for them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import jsonschema

from rkio.api.engine_request import with_system_text
from rkio.api.errors import BadParameter
from rkio.api.reply import json_instruction, parse_reply
from rkio.engine.chunk_push import ChunkPush
from rkio.engine.types import ChatMessage, Done, Engine, EngineEvent, GenerationRequest, TokenChunk, Usage
from rkio.errors import OutputInvalid
from rkio.runtime.base import CONSTRAINED_DECODING

HEADER = "X-Rkio-Structured-Output"
MAX_RETRIES = 2
MAX_REPORTED = 3  # schema errors fed back to the model (the first few are enough to correct a reply)
ANY_OBJECT: dict[str, Any] = {"type": "object"}


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """What the reply must be: JSON matching ``schema`` (``None``: any JSON object)."""

    schema: dict[str, Any] | None
    param: str  # the request field, for error messages

    @property
    def effective_schema(self) -> dict[str, Any]:
        return self.schema if self.schema is not None else ANY_OBJECT


def openai_format(kind: str, json_schema: dict[str, Any] | None) -> OutputFormat | None:
    """``response_format``: ``text`` -> None, ``json_object``, ``json_schema`` (its ``schema`` member)."""
    if kind == "text":
        return None
    if kind == "json_object":
        return OutputFormat(None, "response_format")
    schema = (json_schema or {}).get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise BadParameter("response_format.json_schema.schema must be an object", "response_format")
    return OutputFormat(schema, "response_format.json_schema.schema")


def ollama_format(fmt: str | dict[str, Any] | None) -> OutputFormat | None:
    """``format``: ``"json"`` or a JSON schema object; empty means free text."""
    if not fmt:
        return None
    return OutputFormat(fmt if isinstance(fmt, dict) else None, "format")


def _validator(fmt: OutputFormat) -> jsonschema.protocols.Validator:
    schema = fmt.effective_schema
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BadParameter(f"{fmt.param} is not a valid JSON schema: {exc.message}", fmt.param) from exc
    return cls(schema)


class StructuredOutput:
    """One request's structured output: how the request is shaped, how its events run, which mode applied."""

    def __init__(self, engine: Engine, model: str, fmt: OutputFormat, think: bool, tools: bool,
                 max_retries: int = MAX_RETRIES) -> None:
        self.engine = engine
        self.fmt = fmt
        self.validator = _validator(fmt)
        self.enforced = engine.model(model).runtime in CONSTRAINED_DECODING
        self.think, self.tools = think, tools
        self.max_retries = max_retries
        self.retries = 0

    @property
    def mode(self) -> str:
        if self.enforced:
            return "enforced"
        return f"validated after {self.retries} retries" if self.retries else "validated"

    def headers(self) -> dict[str, str]:
        return {HEADER: self.mode}

    def instruct(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """The conversation with the system prompt asking for JSON (matching the schema when there is one)."""
        return with_system_text(messages, json_instruction(self.fmt.schema))

    def request(self, gen: GenerationRequest) -> GenerationRequest:
        """``gen`` with the schema attached when the runtime enforces it."""
        if not self.enforced:
            return gen
        return replace(gen, json_schema=json.dumps(self.fmt.effective_schema, ensure_ascii=False))

    def events(self, gen: GenerationRequest) -> AsyncIterator[EngineEvent]:
        gen = self.request(gen)
        return self.engine.generate(gen) if self.enforced else self._validated(gen)

    def problem(self, text: str) -> tuple[str | None, str]:
        """``(error, text to send)``: the error of a reply that fails the schema (None if it passes), and the
        reply reduced to its reasoning and JSON value."""
        reply = parse_reply(text, self.think, self.tools, json_mode=True)
        if reply.calls:
            return None, text  # a tool call is an answer of its own: the schema is for the final answer
        cleaned = (f"<think>{reply.reasoning}</think>" if reply.reasoning else "") + reply.content
        try:
            value = json.loads(reply.content)
        except json.JSONDecodeError as exc:
            return f"the reply is not valid JSON ({exc.msg} at position {exc.pos})", cleaned
        errors = sorted(self.validator.iter_errors(value), key=jsonschema.exceptions.relevance, reverse=True)
        if not errors:
            return None, cleaned
        found = "; ".join(f"at {e.json_path}: {e.message}" for e in errors[:MAX_REPORTED])
        return f"the JSON does not match the schema ({found})", cleaned

    async def _validated(self, gen: GenerationRequest) -> AsyncIterator[EngineEvent]:
        prompt_tokens = completion_tokens = 0
        while True:
            parts: list[str] = []
            ids: list[int] = []
            done: Done | None = None
            async with contextlib.aclosing(self.engine.generate(gen)) as events:  # type: ignore[type-var]
                async for event in events:  # closing this generator closes (cancels) the engine's
                    if isinstance(event, TokenChunk):
                        parts.append(event.text)
                        ids.extend(event.token_ids)
                    elif isinstance(event, Done):
                        done = event
                    else:
                        yield event  # queued / loading: a stream reports them as usual
            if done is None:
                return  # the engine ended without a result: the caller reports it
            prompt_tokens += done.usage.prompt_tokens
            completion_tokens += done.usage.completion_tokens
            text = "".join(parts)
            error, cleaned = self.problem(text)
            if error is None:
                yield TokenChunk(cleaned, tuple(ids))
                yield replace(done, usage=Usage(prompt_tokens, completion_tokens))
                return
            if self.retries >= self.max_retries:
                attempts = self.retries + 1
                raise OutputInvalid(f"the model's reply did not match {self.fmt.param} after {attempts} "
                                    f"attempts (this runtime cannot constrain decoding): {error}")
            self.retries += 1
            gen = _retry_request(gen, text, error)


class ResponseHeaders(Mapping[str, str]):
    """``base`` headers plus the structured-output mode as it is whenever they are read (a validated
    stream's retries are counted until its headers go out)."""

    def __init__(self, base: Mapping[str, str], structured: StructuredOutput | None) -> None:
        self.base = base
        self.structured = structured

    def _now(self) -> dict[str, str]:
        return {**self.base, **(self.structured.headers() if self.structured is not None else {})}

    def __getitem__(self, key: str) -> str:
        return self._now()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._now())

    def __len__(self) -> int:
        return len(self._now())


def start_generation(engine: Engine, gen: GenerationRequest, structured: StructuredOutput | None,
                     headers: Mapping[str, str] | None = None, push: ChunkPush | None = None
                     ) -> tuple[AsyncIterator[EngineEvent], ResponseHeaders]:
    """The generation's events, and its extra response headers (``headers`` and the structured mode).

    ``push`` is offered to a plain generation only: structured output checks the whole reply first."""
    events = engine.generate(gen, push) if structured is None else structured.events(gen)
    return events, ResponseHeaders(headers or {}, structured)


def _retry_request(gen: GenerationRequest, reply: str, error: str) -> GenerationRequest:
    """``gen`` continued with the failed reply and the error, asking for a corrected answer."""
    feedback = f"That reply is not valid: {error}. Answer again with only the corrected JSON value."
    if gen.messages is not None:
        messages = (*gen.messages, ChatMessage("assistant", reply), ChatMessage("user", feedback))
        return replace(gen, messages=messages)
    return replace(gen, prompt=f"{gen.prompt or ''}{reply}\n\n{feedback}\n")
