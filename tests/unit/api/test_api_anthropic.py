"""Anthropic Messages over the fake engine: the conversation the engine gets, the event sequence of mixed
replies, count_tokens, and errors in Anthropic's shape (before and after a stream started)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fake_engine import FakeEngine, done, token_chunks

from rkio.engine.types import Loading, Queued
from rkio.errors import GenerationTimeout, LoadFailed

ASK = [{"role": "user", "content": "hi"}]


def events_of(body: str) -> list[dict[str, Any]]:
    out = []
    for block in body.split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln and not ln.startswith(":")]
        if lines:
            assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
            data = json.loads(lines[1].removeprefix("data: "))
            assert data["type"] == lines[0].removeprefix("event: ")
            out.append(data)
    return out


async def messages(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    payload = {"model": "qwen", "max_tokens": 64, "messages": ASK, **body}
    return await client.post("/v1/messages", json=payload)


async def test_conversation_reaches_the_engine(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    history = [
        {"role": "user", "content": [{"type": "text", "text": "weather?"},
                                     {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": "iVBORw=="}}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain",
                                      "is_error": True}, {"type": "text", "text": "and tomorrow?"}]}]
    tools = [{"name": "get_weather", "input_schema": {"type": "object"}}, {"name": "other"}]
    r = await messages(client, system=[{"type": "text", "text": "be brief"}], messages=history, tools=tools,
                       tool_choice={"type": "tool", "name": "get_weather"}, stop_sequences=["END"])
    assert r.status_code == 200
    (sent,) = engine.requests
    assert [m.role for m in sent.messages or ()] == ["system", "user", "assistant", "tool", "user"]
    system, user, assistant, result, follow = sent.messages or ()
    assert system.content.startswith("be brief") and "get_weather" in system.content  # tool_choice
    assert user.content == "weather?" and user.images == (b"\x89PNG",)
    function = {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert assistant.content == ""
    assert assistant.tool_calls == ({"type": "function", "id": "toolu_1", "function": function},)
    assert result.content == "Error: rain" and result.tool_call_id == "toolu_1"
    assert result.name == "get_weather"  # looked up from the tool_use it answers
    assert follow.content == "and tomorrow?"
    assert [t["function"]["name"] for t in sent.tools] == ["get_weather"] and sent.stop == ("END",)
    assert sent.max_tokens == 64


async def test_stream_of_text_then_tool_call(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    call = '<tool_call>{"name": "f", "arguments": {"a": 1}}</tool_call>'
    engine.script = lambda req: [Queued(0), Loading("qwen"),
                                 *token_chunks(["Let me ", "check. ", call[:15], call[15:]]), done(9, 4)]
    r = await messages(client, stream=True, tools=[{"name": "f"}])
    events = events_of(r.text)
    assert [e["type"] for e in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]
    assert events[2]["content_block"] == {"type": "text", "text": ""} and events[2]["index"] == 0
    assert events[6]["index"] == 1 and events[6]["content_block"]["name"] == "f"
    assert events[7]["delta"] == {"type": "input_json_delta", "partial_json": '{"a": 1}'}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"] == {"input_tokens": 9, "output_tokens": 4}


async def test_count_tokens_exact_on_llamacpp_and_estimated_on_rkllm(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.script = lambda req: [*token_chunks(["x"]), done(123, 1)]
    r = await client.post("/v1/messages/count_tokens", json={"model": "llama", "messages": ASK})
    assert r.json() == {"input_tokens": 123} and r.headers["x-rkio-token-count"] == "exact"
    assert engine.requests[0].max_tokens == 1  # counted by the runner's tokenizer on the rendered prompt
    r = await client.post("/v1/messages/count_tokens", json={"model": "qwen", "messages": ASK})
    assert r.headers["x-rkio-token-count"] == "estimate" and r.json()["input_tokens"] > 0
    assert len(engine.requests) == 1  # an estimate runs nothing


async def test_errors_in_anthropic_shape(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await messages(client, model="nope")
    assert r.status_code == 404
    assert r.json() == {"type": "error",
                        "error": {"type": "not_found_error", "message": 'model "nope" not found'}}
    r = await client.post("/v1/messages", json={"model": "qwen", "messages": ASK})  # no max_tokens
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]
    engine.queue_full = True
    r = await messages(client)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert "retry-after" in r.headers
    engine.queue_full = False
    engine.script = lambda req: [LoadFailed("runtime refused the model", retry_after=30)]
    r = await messages(client, stream=True)
    assert r.status_code == 503 and r.json()["error"]["type"] == "overloaded_error"
    engine.script = lambda req: [*token_chunks(["a"]), GenerationTimeout("no token for 30s")]
    events = events_of((await messages(client, stream=True)).text)
    assert events[-1] == {"type": "error", "error": {"type": "api_error", "message": "no token for 30s"}}
