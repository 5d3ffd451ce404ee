"""A live ``rkio serve`` on the simulator, driven by the official ``anthropic`` package: Messages (streamed
and not), tools, thinking, stop sequences, count_tokens, errors in Anthropic's shape, ``x-api-key``.

sim-echo's template shows the model only the last message, which the simulator echoes word by word
(docs/simulator.md), so what a reply contains says exactly which message reached the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest
from live_server import LiveServer

CALL = '<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>'
TOOLS: Any = [{"name": "get_weather", "description": "Weather of a city",
               "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def client_for(server: LiveServer, api_key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=api_key, max_retries=0)


def test_messages_multi_turn_system_stream_and_not(server: LiveServer) -> None:
    client = client_for(server)
    history: Any = [{"role": "user", "content": "alpha beta"},
                    {"role": "assistant", "content": [{"type": "text", "text": "gamma"}]},
                    {"role": "user", "content": [{"type": "text", "text": "delta [[n=40]]"}]}]
    reply = client.messages.create(model="sim-a", system="zebra", max_tokens=100, messages=history)
    assert reply.type == "message" and reply.role == "assistant" and reply.id.startswith("msg_")
    text = "".join(b.text for b in reply.content if b.type == "text")
    for word in ("zebra", "alpha", "gamma", "delta"):  # system and the whole history reached the runtime
        assert word in text
    assert reply.stop_reason == "end_turn" and reply.stop_sequence is None
    assert reply.usage.output_tokens == 40 and reply.usage.input_tokens > 0
    with client.messages.stream(model="sim-a", system="zebra", max_tokens=100, messages=history) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "".join(b.text for b in final.content if b.type == "text") == text
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 40
    assert final.usage.input_tokens == reply.usage.input_tokens  # message_delta carries the prompt count
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    short = client.messages.create(model="sim-a", max_tokens=5, messages=history)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 5
    # the package has no sampling arguments any more; older clients and curl send them in the body, and
    # like on the other APIs a runtime without per-run sampling keeps the loaded one and says so
    sampled = client.messages.with_raw_response.create(model="sim-a", max_tokens=5, messages=history,
                                                       extra_body={"temperature": 0.2, "top_k": 5})
    assert sampled.parse().usage.output_tokens == 5
    assert sampled.headers["x-rkio-sampling"] == "loaded"
    assert "sampling" in sampled.headers["x-rkio-not-applied"]


def test_raw_event_sequence(server: LiveServer) -> None:
    payload = {"model": "sim-echo", "max_tokens": 50, "stream": True,
               "messages": [{"role": "user", "content": "one two three [[n=3]]"}]}
    with httpx.stream("POST", server.url + "/v1/messages", json=payload) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = []
    for block in body.split("\n\n"):
        lines = [ln for ln in block.split("\n") if ln and not ln.startswith(":")]
        if lines:
            name, data = lines[0].removeprefix("event: "), json.loads(lines[1].removeprefix("data: "))
            assert data["type"] == name
            events.append(data)
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[3:-3]) == {"content_block_delta"}  # tokens that arrive together share a delta
    assert "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta") == \
        " one two three"
    assert events[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2]["usage"]["output_tokens"] == 3


def test_stop_sequences(server: LiveServer) -> None:
    client = client_for(server)
    messages: Any = [{"role": "user", "content": "red green blue yellow [[n=4]]"}]
    reply = client.messages.create(model="sim-echo", max_tokens=50, messages=messages,
                                   stop_sequences=["blue"])
    assert reply.stop_reason == "stop_sequence" and reply.stop_sequence == "blue"
    assert reply.content[0].type == "text" and reply.content[0].text.split() == ["red", "green"]
    with client.messages.stream(model="sim-echo", max_tokens=50, messages=messages,
                                stop_sequences=["blue"]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "blue"


def test_tool_use_and_tool_result(server: LiveServer) -> None:
    client = client_for(server)
    ask: Any = [{"role": "user", "content": f"{CALL} [[n=1]]"}]
    reply = client.messages.create(model="sim-echo", max_tokens=50, tools=TOOLS, messages=ask)
    assert reply.stop_reason == "tool_use"
    use = next(b for b in reply.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"city": "Paris"} and use.id.startswith("toolu_")
    with client.messages.stream(model="sim-echo", max_tokens=50, tools=TOOLS, messages=ask) as stream:
        deltas = [e.delta for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert any(d.type == "input_json_delta" for d in deltas)
    streamed = next(b for b in final.content if b.type == "tool_use")
    assert streamed.name == "get_weather" and streamed.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    result = {"type": "tool_result", "tool_use_id": use.id,
              "content": [{"type": "text", "text": "sunny 21C [[n=2]]"}]}
    answer: Any = [*ask, {"role": "assistant", "content": [b.model_dump() for b in reply.content]},
                   {"role": "user", "content": [result]}]
    after = client.messages.create(model="sim-echo", max_tokens=50, tools=TOOLS, messages=answer)
    assert after.stop_reason == "end_turn"
    assert after.content[0].type == "text" and after.content[0].text.split() == ["sunny", "21C"]


def test_thinking_blocks(server: LiveServer) -> None:
    client = client_for(server)
    messages: Any = [{"role": "user", "content": "ponder this [[think]] [[n=6]]"}]
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    reply = client.messages.create(model="sim-echo", max_tokens=50, messages=messages, thinking=thinking)
    kinds = [b.type for b in reply.content]
    assert kinds == ["thinking", "text"]
    assert "<think>" not in reply.content[1].text  # type: ignore[union-attr]
    with client.messages.stream(model="sim-echo", max_tokens=50, messages=messages,
                                thinking=thinking) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == kinds
    assert final.content[0].thinking == reply.content[0].thinking  # type: ignore[union-attr]


def test_count_tokens_is_labelled_an_estimate_on_rkllm(server: LiveServer) -> None:
    client = client_for(server)
    short = client.messages.with_raw_response.count_tokens(
        model="sim-a", messages=[{"role": "user", "content": "hello"}])
    assert short.headers["x-rkio-token-count"] == "estimate"
    long = client.messages.count_tokens(model="sim-a", system="be brief", tools=TOOLS,
                                        messages=[{"role": "user", "content": "hello " * 200}])
    assert 0 < short.parse().input_tokens < long.input_tokens


def test_errors_in_anthropic_shape(server: LiveServer) -> None:
    client = client_for(server)
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert missing.value.body == {"type": "error", "error": {
        "type": "not_found_error", "message": missing.value.body["error"]["message"]}}  # type: ignore
    nobody: Any = [{"role": "user", "content": "x"}]
    with pytest.raises(anthropic.NotFoundError), \
            client.messages.stream(model="no-such", max_tokens=5, messages=nobody) as stream:
        stream.get_final_message()
    with pytest.raises(anthropic.BadRequestError) as bad:  # the package has no sampling arguments any more
        client.messages.create(model="sim-a", max_tokens=5, extra_body={"temperature": 1.5},
                               messages=[{"role": "user", "content": "x"}])
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "temperature" in bad.value.message
    with pytest.raises(anthropic.BadRequestError) as long:
        client.messages.create(model="sim-echo", max_tokens=5,
                               messages=[{"role": "user", "content": "w " * 2000}])
    assert "context" in long.value.message
    with pytest.raises(anthropic.BadRequestError) as block:
        client.messages.create(model="sim-a", max_tokens=5, messages=[
            {"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": "x"}}]}])
    assert "document" in block.value.message
    r = httpx.post(server.url + "/v1/messages", content=b"{not json")
    assert r.status_code == 400 and r.json()["type"] == "error"


def test_x_api_key(start_server: Callable[..., LiveServer]) -> None:
    live = start_server("--api-key", "s3cret")
    try:
        with pytest.raises(anthropic.AuthenticationError) as info:
            client_for(live, "wrong").messages.create(
                model="sim-a", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        reply = client_for(live, "s3cret").messages.create(
            model="sim-a", max_tokens=5, messages=[{"role": "user", "content": "x [[n=2]]"}])
        assert reply.usage.output_tokens == 2
    finally:
        assert live.stop() == 0, live.log()
