"""OpenAI-compatible endpoints over the fake engine: bodies, SSE framing, parameters, errors."""

from __future__ import annotations

import json

import httpx
from api_helpers import sse_events
from fake_engine import FakeEngine, done, token_chunks

from rkio.engine.types import GenerationRequest, Loading, Queued
from rkio.errors import ContextLengthExceeded, InsufficientMemory, RunnerCrashed

CHAT = "/v1/chat/completions"


async def test_chat_returns_reply_usage_and_stop(client: httpx.AsyncClient) -> None:
    r = await client.post(
        CHAT, json={"model": "qwen", "messages": [{"role": "user", "content": "hello there"}]}
    )
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello there"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert body["model"] == "qwen" and body["id"].startswith("chatcmpl-")


async def test_whole_history_and_system_prompt_reach_the_engine(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "text", "text": "q"}]},
    ]
    r = await client.post(CHAT, json={"model": "qwen", "messages": messages})
    assert r.status_code == 200
    sent = engine.requests[0].messages
    assert sent is not None
    assert [(m.role, m.content) for m in sent] == [
        ("system", "be brief"),
        ("user", "first question"),
        ("assistant", "first answer"),
        ("user", "second\nq"),
    ]


async def test_sampling_and_limits_are_passed(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await client.post(
        CHAT,
        json={
            "model": "qwen",
            "messages": [{"role": "user", "content": "a b c d"}],
            "max_completion_tokens": 2,
            "temperature": 0.2,
            "top_p": 0.5,
            "seed": 7,
            "frequency_penalty": 0.5,
            "presence_penalty": -0.5,
            "stop": "END",
            "keep_alive": "10m",
        },
    )
    assert r.status_code == 200
    req: GenerationRequest = engine.requests[0]
    assert req.max_tokens == 2 and req.stop == ("END",) and req.keep_alive == 600.0
    assert req.sampling is not None
    assert (req.sampling.temperature, req.sampling.top_p, req.sampling.seed) == (0.2, 0.5, 7)
    assert (req.sampling.frequency_penalty, req.sampling.presence_penalty) == (0.5, -0.5)
    assert req.sampling.top_k == 40  # untouched fields keep the model's defaults
    assert r.json()["choices"][0]["finish_reason"] == "length"


async def test_no_sampling_fields_means_model_defaults(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    await client.post(
        CHAT, json={"model": "qwen", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b"]}
    )
    assert engine.requests[0].sampling is None and engine.requests[0].stop == ("a", "b")


async def test_stream_framing_role_first_then_deltas_then_done(client: httpx.AsyncClient) -> None:
    r = await client.post(
        CHAT,
        json={"model": "qwen", "stream": True, "messages": [{"role": "user", "content": "one two three"}]},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "one two three"
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "stop"
    assert all("usage" not in c for c in chunks)


async def test_stream_include_usage_adds_usage_chunk(client: httpx.AsyncClient) -> None:
    r = await client.post(
        CHAT,
        json={
            "model": "qwen",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "one two"}],
        },
    )
    chunks = sse_events(r.text)[:-1]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_n_greater_than_one_is_rejected(client: httpx.AsyncClient) -> None:
    r = await client.post(
        CHAT, json={"model": "qwen", "n": 2, "messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "n" and r.json()["error"]["type"] == "invalid_request_error"


async def test_unknown_model_is_404_in_openai_shape(client: httpx.AsyncClient) -> None:
    for stream in (False, True):
        r = await client.post(
            CHAT, json={"model": "nope", "stream": stream, "messages": [{"role": "user", "content": "x"}]}
        )
        assert r.status_code == 404
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["code"] == "model_not_found"


async def test_validation_errors_are_clear_400s(client: httpx.AsyncClient) -> None:
    cases = [
        b"{not json",
        b"[]",
        json.dumps({"model": "qwen", "messages": "hi"}).encode(),
        json.dumps({"model": "qwen", "messages": [{"role": "wizard", "content": "x"}]}).encode(),
        json.dumps({"model": "qwen", "messages": []}).encode(),
        json.dumps(
            {"model": "qwen", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}
        ).encode(),
        b"",
    ]
    for body in cases:
        r = await client.post(CHAT, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400, body
        assert r.json()["error"]["message"]


async def test_context_too_long_is_400_with_code(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = lambda req: [ContextLengthExceeded("prompt is 5000 tokens; the context holds 4096")]
    r = await client.post(CHAT, json={"model": "qwen", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


async def test_busy_is_429_with_retry_after(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.queue_full = True
    for stream in (False, True):
        r = await client.post(
            CHAT, json={"model": "qwen", "stream": stream, "messages": [{"role": "user", "content": "x"}]}
        )
        assert r.status_code == 429 and r.headers["retry-after"] == "3"
        assert r.json()["error"]["type"] == "rate_limit_error"


async def test_cannot_fit_is_503_with_explanation_even_when_streaming(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    why = "qwen needs 9.0 GiB; the budget is 8.0 GiB with nothing left to evict"
    engine.script = lambda req: [Queued(0), Loading("qwen"), InsufficientMemory(why)]
    r = await client.post(
        CHAT, json={"model": "qwen", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 503 and r.json()["error"]["message"] == why


async def test_error_after_first_token_is_a_final_stream_event(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    engine.script = lambda req: [*token_chunks(["partial"]), RunnerCrashed("runner crashed with SIGSEGV")]
    r = await client.post(
        CHAT, json={"model": "qwen", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 200
    events = sse_events(r.text)
    assert events[-1]["error"]["code"] == "runner_crashed"
    assert "SIGSEGV" in events[-1]["error"]["message"]
    assert "[DONE]" not in events


async def test_several_tokens_per_chunk_are_one_delta(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = lambda req: [*token_chunks(["Hel", 'lo, "wörld"\n']), done(3, 2)]
    r = await client.post(
        CHAT, json={"model": "qwen", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    )
    deltas = [c["choices"][0]["delta"].get("content") for c in sse_events(r.text)[:-1]]
    assert deltas == ["", "Hel", 'lo, "wörld"\n', None]


async def test_completions_raw_prompt_and_echo(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await client.post("/v1/completions", json={"model": "qwen", "prompt": "once upon", "echo": True})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "once upononce upon"
    assert engine.requests[0].raw and engine.requests[0].prompt == "once upon"
    r = await client.post("/v1/completions", json={"model": "qwen", "prompt": "a b", "stream": True})
    events = sse_events(r.text)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == "a b" and events[-1] == "[DONE]"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"


async def test_models_list_and_get(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/models")
    assert [m["id"] for m in r.json()["data"]] == ["qwen", "llama"]
    assert (await client.get("/v1/models/qwen")).json()["id"] == "qwen"
    for bad in ("nope", "../../etc/passwd", "..%2F..%2Fetc"):
        r = await client.get(f"/v1/models/{bad}")
        assert r.status_code == 404 and "error" in r.json()


async def test_default_model_fills_a_missing_model(engine: FakeEngine) -> None:
    from rkio.api.app import create_app
    from rkio.config import Settings

    app = create_app(engine, Settings(default_model="qwen"), manage_engine=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post(CHAT, json={"messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 200 and engine.requests[0].model == "qwen"
