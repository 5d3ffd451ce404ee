"""Tool-call and reasoning extraction, whole and incremental (every chunking gives the same result)."""

from __future__ import annotations

import json

import httpx
from api_helpers import sse_events
from fake_engine import FakeEngine, done, token_chunks
from hypothesis import given, settings
from hypothesis import strategies as st

from rkio.api.reasoning import ThinkSplitter, split_reasoning
from rkio.api.reply import ReplyParser, extract_json, parse_reply
from rkio.api.tool_calls import ToolCallScanner, parse_tool_calls

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_hermes_tool_call_is_parsed_and_removed_from_text() -> None:
    text, calls = parse_tool_calls("Let me check.\n" + CALL)
    assert text == "Let me check.\n"
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]
    assert calls[0].id.startswith("call_") and json.loads(calls[0].arguments_json) == {"city": "Paris"}


def test_bare_json_fallback_and_lists_and_string_arguments() -> None:
    _, calls = parse_tool_calls(' {"name": "f", "arguments": "{\\"x\\": 1}"}')
    assert [(c.name, c.arguments) for c in calls] == [("f", {"x": 1})]
    _, calls = parse_tool_calls('[{"name": "a", "parameters": {}}, {"name": "b", "arguments": {"y": 2}}]')
    assert [c.name for c in calls] == ["a", "b"]


def test_text_that_is_not_a_call_is_kept() -> None:
    assert parse_tool_calls('{"answer": 42}') == ('{"answer": 42}', [])
    assert parse_tool_calls("use <tool_call>not json</tool_call> here") == (
        "use <tool_call>not json</tool_call> here",
        [],
    )
    assert parse_tool_calls("a < b and <tool") == ("a < b and <tool", [])


def test_unclosed_tool_call_at_end_is_still_a_call() -> None:
    text, calls = parse_tool_calls('<tool_call>{"name": "f", "arguments": {}}')
    assert text == "" and calls[0].name == "f"


def test_reasoning_split() -> None:
    assert split_reasoning("<think>\nhmm, 2+2</think>\n\nIt is 4.") == ("hmm, 2+2", "It is 4.")
    assert split_reasoning("No tags here.") == ("", "No tags here.")
    assert split_reasoning("  <think>unfinished") == ("unfinished", "")
    assert split_reasoning("Answer first <think>later</think>") == ("", "Answer first <think>later</think>")


def _chunks(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces, prev = [], 0
    for p in points:
        pieces.append(text[prev:p])
        prev = p
    pieces.append(text[prev:])
    return pieces


REPLIES = [
    "<think>plan: call it</think>\n\nSure. " + CALL + " done",
    ' {"name": "f", "arguments": {"q": "<think>"}}',
    "plain text with a < sign and </think> and <tool_ca",
    "<think></think>" + CALL + CALL,
]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(REPLIES), st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_incremental_parsing_matches_whole_text(reply: str, cuts: list[int]) -> None:
    parser = ReplyParser(think=True, tools=True)
    content, reasoning, names = [], [], []
    for piece in [*_chunks(reply, cuts), None]:
        part = parser.finish() if piece is None else parser.feed(piece)
        content.append(part.content)
        reasoning.append(part.reasoning)
        names += [c.name for c in part.calls]
    whole = parse_reply(reply, think=True, tools=True)
    assert "".join(content) == whole.content
    assert "".join(reasoning) == whole.reasoning
    assert names == [c.name for c in whole.calls]


def test_streaming_releases_plain_text_immediately() -> None:
    scanner = ToolCallScanner()
    assert scanner.feed("Hello") == ("Hello", [])
    assert scanner.feed(" wor<tool") == (" wor", [])  # only a possible tag start is held back
    assert scanner.feed("s are fun") == ("<tools are fun", [])
    splitter = ThinkSplitter()
    assert splitter.feed("<thi") == ("", "")
    assert splitter.feed("nk>abc</th") == ("abc", "")
    assert splitter.feed("ink>xyz") == ("", "xyz")


def test_extract_json_trims_chatter() -> None:
    assert extract_json('Sure! ```json\n{"a": [1, 2]}\n``` hope it helps') == '{"a": [1, 2]}'
    assert extract_json("no json") == "no json"


async def test_chat_tool_calls_non_streaming(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = lambda req: [*token_chunks([CALL[:15], CALL[15:]]), done(10, 20)]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    history = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "user", "content": "and Paris?"},
    ]
    r = await client.post("/v1/chat/completions", json={"model": "qwen", "messages": history, "tools": tools})
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    sent = engine.requests[0]
    assert sent.tools == tuple(tools)
    assert sent.messages is not None
    assert sent.messages[1].tool_calls[0]["function"]["arguments"] == {"city": "Rome"}
    assert (sent.messages[2].role, sent.messages[2].tool_call_id) == ("tool", "call_1")


async def test_chat_tool_calls_streaming(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = lambda req: [*token_chunks(["Checking", ". <tool", CALL[5:]]), done(10, 20)]
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    r = await client.post(
        "/v1/chat/completions",
        json={
            "model": "qwen",
            "stream": True,
            "tools": tools,
            "messages": [{"role": "user", "content": "w"}],
        },
    )
    chunks = sse_events(r.text)[:-1]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("content") or "" for d in deltas) == "Checking. "
    calls = [tc for d in deltas for tc in d.get("tool_calls", [])]
    assert calls[0]["index"] == 0 and calls[0]["function"]["name"] == "get_weather"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_tool_choice_none_sends_no_tools(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = lambda req: [*token_chunks([CALL]), done(1, 1)]
    r = await client.post(
        "/v1/chat/completions",
        json={
            "model": "qwen",
            "tool_choice": "none",
            "messages": [{"role": "user", "content": "w"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        },
    )
    assert engine.requests[0].tools == ()
    assert r.json()["choices"][0]["message"]["content"] == CALL


async def test_reasoning_only_split_when_asked(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = lambda req: [*token_chunks(["<think>why", "</think>\n\nbecause"]), done(1, 2)]
    msgs = [{"role": "user", "content": "q"}]
    r = await client.post(
        "/v1/chat/completions", json={"model": "qwen", "messages": msgs, "reasoning_effort": "low"}
    )
    message = r.json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "because", "reasoning_content": "why"}
    assert engine.requests[-1].enable_thinking
    r = await client.post("/v1/chat/completions", json={"model": "qwen", "messages": msgs})
    assert r.json()["choices"][0]["message"]["content"] == "<think>why</think>\n\nbecause"
    assert not engine.requests[-1].enable_thinking
    r = await client.post(
        "/v1/chat/completions",
        json={
            "model": "qwen",
            "messages": msgs,
            "stream": True,
            "chat_template_kwargs": {"enable_thinking": True},
        },
    )
    deltas = [c["choices"][0]["delta"] for c in sse_events(r.text)[:-1]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "why"
    assert "".join(d.get("content") or "" for d in deltas) == "because"


async def test_json_response_format_instructs_and_trims(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.script = lambda req: [*token_chunks(['Here: {"a": 1} bye']), done(1, 1)]
    r = await client.post(
        "/v1/chat/completions",
        json={
            "model": "qwen",
            "messages": [{"role": "user", "content": "q"}],
            "response_format": {"type": "json_object"},
        },
    )
    assert r.json()["choices"][0]["message"]["content"] == '{"a": 1}'
    sent = engine.requests[0].messages
    assert sent is not None and sent[0].role == "system" and "JSON" in sent[0].content
