"""Ollama-compatible endpoints over the fake engine."""

from __future__ import annotations

import base64
from datetime import datetime

import httpx
from api_helpers import ndjson_lines
from fake_engine import FakeEngine, done, token_chunks

from rkio.engine.types import Loading, Queued
from rkio.errors import GenerationTimeout, LoadFailed

MSG = [{"role": "user", "content": "hi there"}]


async def test_chat_streams_ndjson_by_default_with_durations(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/chat", json={"model": "qwen", "messages": MSG})
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    lines = ndjson_lines(r.text)
    assert "".join(ln["message"]["content"] for ln in lines) == "hi there"
    assert all(not ln["done"] for ln in lines[:-1])
    last = lines[-1]
    assert last["done"] and last["done_reason"] == "stop"
    assert (last["prompt_eval_count"], last["eval_count"]) == (2, 2)
    assert last["total_duration"] == 2_000_000_000 and last["load_duration"] == 0
    assert last["prompt_eval_duration"] == 400_000_000 and last["eval_duration"] == 1_500_000_000
    datetime.fromisoformat(last["created_at"].replace("Z", "+00:00"))


async def test_chat_non_streaming_and_options(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await client.post(
        "/api/chat",
        json={
            "model": "qwen:latest",
            "messages": MSG,
            "stream": False,
            "keep_alive": "1h",
            "options": {
                "num_ctx": 8192,
                "num_predict": 1,
                "temperature": 0.1,
                "top_k": 5,
                "top_p": 0.3,
                "repeat_penalty": 1.3,
                "seed": 3,
                "stop": ["x"],
                "num_gpu": 99,
            },
        },
    )
    body = r.json()
    assert body["message"] == {"role": "assistant", "content": "hi"} and body["done_reason"] == "length"
    assert body["model"] == "qwen"
    req = engine.requests[0]
    assert (req.model, req.num_ctx, req.max_tokens, req.keep_alive, req.stop) == (
        "qwen",
        8192,
        1,
        3600.0,
        ("x",),
    )
    assert req.sampling is not None
    assert (req.sampling.temperature, req.sampling.top_k, req.sampling.top_p) == (0.1, 5, 0.3)
    assert (req.sampling.repeat_penalty, req.sampling.seed) == (1.3, 3)


async def test_keep_alive_numbers_and_unlimited_predict(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    await client.post(
        "/api/chat",
        json={
            "model": "qwen",
            "messages": MSG,
            "stream": False,
            "keep_alive": -1,
            "options": {"num_predict": -1},
        },
    )
    assert engine.requests[0].keep_alive == -1.0 and engine.requests[0].max_tokens is None
    r = await client.post("/api/chat", json={"model": "qwen", "messages": MSG, "keep_alive": "soon"})
    assert r.status_code == 400 and "keep_alive" in r.json()["error"]


async def test_generate_templates_with_system_or_raw(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await client.post(
        "/api/generate", json={"model": "qwen", "prompt": "say this", "system": "sys", "stream": False}
    )
    assert r.json()["response"] == "say this" and r.json()["done"]
    msgs = engine.requests[0].messages
    assert msgs is not None and [(m.role, m.content) for m in msgs] == [
        ("system", "sys"),
        ("user", "say this"),
    ]
    r = await client.post("/api/generate", json={"model": "qwen", "prompt": "a b", "raw": True})
    lines = ndjson_lines(r.text)
    assert "".join(ln["response"] for ln in lines) == "a b" and lines[-1]["done_reason"] == "stop"
    assert engine.requests[1].raw and engine.requests[1].prompt == "a b"


async def test_load_and_unload_with_empty_requests(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await client.post("/api/generate", json={"model": "qwen", "keep_alive": "30m"})
    assert r.json()["done_reason"] == "load" and engine.loads == [("qwen", 1800.0)]
    r = await client.post("/api/chat", json={"model": "qwen", "messages": [], "keep_alive": 0})
    assert r.json()["done_reason"] == "unload" and r.json()["message"]["content"] == ""
    assert engine.unloads == ["qwen"]
    r = await client.post("/api/generate", json={"model": "ghost", "keep_alive": 0})
    assert r.status_code == 404 and r.json() == {"error": 'model "ghost" not found'}
    assert engine.requests == []


async def test_thinking_and_tools_on_chat(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    call = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    engine.script = lambda req: [*token_chunks(["<think>add", " them</think>", call]), done(3, 4)]
    tools = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    body = {"model": "qwen", "messages": MSG, "think": True, "tools": tools}
    r = await client.post("/api/chat", json={**body, "stream": False})
    message = r.json()["message"]
    assert message["thinking"] == "add them" and message["content"] == ""
    assert message["tool_calls"] == [{"function": {"name": "add", "arguments": {"a": 1, "b": 2}}}]
    lines = ndjson_lines((await client.post("/api/chat", json=body)).text)
    assert "".join(ln["message"].get("thinking", "") for ln in lines) == "add them"
    calls = [tc for ln in lines for tc in ln["message"].get("tool_calls", [])]
    assert [c["function"]["name"] for c in calls] == ["add"]


async def test_tool_results_and_images_in_history(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    history = [
        {"role": "user", "content": "look", "images": [png]},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {}}}]},
        {"role": "tool", "content": "42", "tool_name": "f"},
        {"role": "user", "content": "so?"},
    ]
    r = await client.post("/api/chat", json={"model": "qwen", "messages": history, "stream": False})
    assert r.status_code == 200
    msgs = engine.requests[0].messages
    assert msgs is not None and msgs[0].images == (b"\x89PNG fake",)
    assert msgs[2].role == "tool" and msgs[2].name == "f" and len(msgs) == 4
    r = await client.post(
        "/api/chat",
        json={"model": "qwen", "messages": [{"role": "user", "content": "x", "images": ["not base64!"]}]},
    )
    assert r.status_code == 400


async def test_format_json_best_effort(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.script = lambda req: [*token_chunks(['ok {"x": true} thanks']), done(1, 1)]
    r = await client.post(
        "/api/generate", json={"model": "qwen", "prompt": "q", "format": "json", "stream": False}
    )
    assert r.json()["response"] == '{"x": true}'


async def test_errors_keep_ollama_shape_and_status(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await client.post("/api/chat", json={"model": "nope", "messages": MSG})
    assert r.status_code == 404 and r.json() == {"error": 'model "nope" not found'}
    engine.script = lambda req: [
        Queued(1),
        Loading("qwen"),
        LoadFailed("runtime refused the model", retry_after=30),
    ]
    r = await client.post("/api/chat", json={"model": "qwen", "messages": MSG})
    assert r.status_code == 503 and r.headers["retry-after"] == "30"
    assert r.json() == {"error": "runtime refused the model"}
    engine.script = lambda req: [*token_chunks(["a"]), GenerationTimeout("no token for 30s")]
    lines = ndjson_lines((await client.post("/api/generate", json={"model": "qwen", "prompt": "p"})).text)
    assert lines[-1] == {"error": "no token for 30s"}
    r = await client.post("/api/chat", json={"messages": MSG})
    assert r.status_code == 400 and "model" in r.json()["error"]
    engine.queue_full = True
    r = await client.post("/api/generate", json={"model": "qwen", "prompt": "p"})
    assert r.status_code == 429 and r.headers["retry-after"] == "3" and "busy" in r.json()["error"]


async def test_tags_ps_show_version(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    tags = (await client.get("/api/tags")).json()["models"]
    assert [t["name"] for t in tags] == ["qwen", "llama"]
    assert (
        tags[0]["size"] == 1 << 30
        and tags[0]["details"]["format"] == "rkllm"
        and len(tags[0]["digest"]) == 64
    )
    assert (await client.get("/api/ps")).json() == {"models": []}
    await client.post("/api/generate", json={"model": "qwen", "keep_alive": -1})
    await client.post("/api/generate", json={"model": "llama"})
    ps = (await client.get("/api/ps")).json()["models"]
    assert [p["name"] for p in ps] == ["qwen", "llama"]  # longest remaining first
    assert ps[0]["expires_at"].startswith("9999") and ps[0]["size"] == 1_500_000_000
    assert ps[0]["size_vram"] == 0 and ps[0]["context_length"] == 4096
    datetime.fromisoformat(ps[1]["expires_at"].replace("Z", "+00:00"))
    show = (await client.post("/api/show", json={"model": "qwen"})).json()
    assert "temperature 0.8" in show["parameters"] and show["details"]["format"] == "rkllm"
    assert (await client.post("/api/show", json={"name": "x/../../y"})).status_code == 404
    assert (await client.get("/api/version")).json()["version"]


def test_created_at_is_rfc3339_utc_with_microseconds_now_and_for_a_given_time() -> None:
    import datetime

    from rkio.api.ollama_stream import timestamp

    before = datetime.datetime.now(datetime.UTC)
    now = timestamp()
    after = datetime.datetime.now(datetime.UTC)
    assert now.endswith("Z") and len(now) == len("2026-12-02T03:47:36.263200Z")
    assert before <= datetime.datetime.fromisoformat(now.replace("Z", "+00:00")) <= after
    assert timestamp(1700000000.25) == "2023-11-14T22:13:20.250000Z"
