"""Structured output over the fake engine: enforced on llama.cpp models, validated with retries on rkllm ones.

In FakeEngine the model "llama" is a llama.cpp model and "qwen" an rkllm one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
from api_helpers import ndjson_lines, sse_events
from fake_engine import FakeEngine, Step, done, token_chunks

from rkio.engine.types import GenerationRequest

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
          "required": ["city", "temp"]}
FORMAT = {"type": "json_schema", "json_schema": {"name": "weather", "strict": True, "schema": SCHEMA}}
ASK = [{"role": "user", "content": "weather in Paris?"}]
GOOD = '{"city": "Paris", "temp": 21}'


def replies(*texts: str) -> Callable[[GenerationRequest], list[Step]]:
    """A script answering the n-th generation with the n-th text (the last one repeats)."""
    calls = {"n": 0}

    def script(request: GenerationRequest) -> list[Step]:
        text = texts[min(calls["n"], len(texts) - 1)]
        calls["n"] += 1
        return [*token_chunks([text[:5], text[5:]]), done(10, 7)]

    return script


async def chat(client: httpx.AsyncClient, model: str = "qwen", **extra: Any) -> httpx.Response:
    return await client.post("/v1/chat/completions",
                             json={"model": model, "messages": ASK, "response_format": FORMAT, **extra})


async def test_rkllm_reply_is_validated_and_retried_with_the_error(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.script = replies('{"city": "Paris"}', GOOD)
    r = await chat(client)
    assert r.status_code == 200
    assert r.headers["x-rkio-structured-output"] == "validated after 1 retries"
    assert json.loads(r.json()["choices"][0]["message"]["content"]) == {"city": "Paris", "temp": 21}
    assert r.json()["usage"]["completion_tokens"] == 14  # both attempts were generated
    first, second = engine.requests
    assert first.json_schema is None  # nothing to enforce on rkllm
    assert first.messages is not None and "JSON" in first.messages[0].content  # the instruction
    assert second.messages is not None
    assert second.messages[-2].role == "assistant" and second.messages[-2].content == '{"city": "Paris"}'
    feedback = second.messages[-1]
    assert feedback.role == "user" and "'temp' is a required property" in feedback.content


async def test_rkllm_valid_first_time_says_validated(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = replies("Sure! " + GOOD + " Anything else?")
    r = await chat(client)
    assert r.headers["x-rkio-structured-output"] == "validated" and len(engine.requests) == 1
    assert r.json()["choices"][0]["message"]["content"] == GOOD  # the chatter around the value is gone


async def test_rkllm_gives_up_with_a_clear_error(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = replies("I do not know")
    r = await chat(client)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "output_validation_failed" and "after 3 attempts" in error["message"]
    assert "not valid JSON" in error["message"]
    assert len(engine.requests) == 3
    assert engine.completed == [rq.request_id for rq in engine.requests]  # every attempt ran to its end


async def test_rkllm_stream_sends_only_the_validated_reply(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.script = replies("[1, 2]", GOOD)
    r = await chat(client, stream=True)
    assert r.headers["x-rkio-structured-output"] == "validated after 1 retries"
    deltas = [c["choices"][0]["delta"] for c in sse_events(r.text)[:-1]]
    assert "".join(d.get("content") or "" for d in deltas) == GOOD
    engine.script = replies("nope")
    r = await chat(client, stream=True)
    assert r.status_code == 422  # nothing was sent before validation, so the error keeps its status


async def test_llamacpp_enforces_the_schema_while_decoding(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.script = replies(GOOD)
    r = await chat(client, model="llama")
    assert r.status_code == 200 and r.headers["x-rkio-structured-output"] == "enforced"
    (sent,) = engine.requests
    assert sent.json_schema is not None and json.loads(sent.json_schema) == SCHEMA
    r = await client.post("/v1/chat/completions", json={
        "model": "llama", "messages": ASK, "response_format": {"type": "json_object"}})
    assert json.loads(engine.requests[-1].json_schema or "") == {"type": "object"}


async def test_invalid_schema_is_a_400(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}
    r = await client.post("/v1/chat/completions",
                          json={"model": "qwen", "messages": ASK, "response_format": bad})
    assert r.status_code == 400 and "not a valid JSON schema" in r.json()["error"]["message"]
    assert engine.requests == []


async def test_ollama_format_schema_and_json(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = replies('{"city": 5}', GOOD)
    r = await client.post("/api/chat", json={"model": "qwen", "messages": ASK, "format": SCHEMA,
                                             "stream": False})
    assert r.headers["x-rkio-structured-output"] == "validated after 1 retries"
    assert json.loads(r.json()["message"]["content"]) == {"city": "Paris", "temp": 21}
    assert "5 is not of type 'string'" in (engine.requests[1].messages or ())[-1].content
    engine.script = replies('{"ok": true}')
    r = await client.post("/api/generate", json={"model": "llama", "prompt": "q", "format": "json"})
    assert r.headers["x-rkio-structured-output"] == "enforced"
    assert "".join(line.get("response", "") for line in ndjson_lines(r.text)) == '{"ok": true}'


async def test_anthropic_output_config_format(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = replies("x", GOOD)
    r = await client.post("/v1/messages", json={
        "model": "qwen", "max_tokens": 50, "messages": ASK,
        "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}}})
    assert r.status_code == 200 and r.headers["x-rkio-structured-output"] == "validated after 1 retries"
    assert json.loads(r.json()["content"][0]["text"]) == {"city": "Paris", "temp": 21}
