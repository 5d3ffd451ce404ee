"""A live ``rkio serve`` on the simulator, driven by the official ``openai`` and ``ollama`` packages and raw
HTTP."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import ollama
import openai
import pytest
from live_server import LiveServer


def test_openai_chat_multi_turn_stream_and_not(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    history = [{"role": "system", "content": "zebra"},
               {"role": "user", "content": "alpha beta"}, {"role": "assistant", "content": "gamma"},
               {"role": "user", "content": "delta [[n=40]]"}]
    reply = client.chat.completions.create(model="sim-a", messages=history)  # type: ignore[arg-type]
    text = reply.choices[0].message.content or ""
    for word in ("zebra", "alpha", "gamma", "delta"):  # the whole history reached the runtime
        assert word in text
    assert reply.usage is not None and reply.usage.completion_tokens == 40
    assert reply.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(
        model="sim-a", messages=history, stream=True, stream_options={"include_usage": True}))  # type: ignore
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 40
    short = client.chat.completions.create(model="sim-a", messages=history, max_tokens=5)  # type: ignore
    assert short.choices[0].finish_reason == "length" and short.usage and short.usage.completion_tokens == 5


def test_openai_tools_reasoning_and_errors(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    call = '<tool_call>{"name":"get_weather","arguments":{"city":"Paris"}}</tool_call>'
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    reply = client.chat.completions.create(
        model="sim-echo", tools=tools, messages=[{"role": "user", "content": f"{call} [[n=1]]"}])  # type: ignore
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    assert choice.message.tool_calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}  # type: ignore
    thought = client.chat.completions.create(
        model="sim-echo", reasoning_effort="low",
        messages=[{"role": "user", "content": "ponder this [[think]] [[n=6]]"}])  # type: ignore
    extra = thought.choices[0].message.model_extra or {}
    assert extra.get("reasoning_content") and "<think>" not in (thought.choices[0].message.content or "")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="sim-a", n=2, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 400
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="sim-echo", messages=[{"role": "user", "content": "w " * 2000}])
    assert info.value.code == "context_length_exceeded"
    models = [m.id for m in client.models.list()]
    assert {"sim-a", "sim-echo", "sim-slow"} <= set(models)


def test_ollama_chat_generate_keep_alive_and_ps(server: LiveServer) -> None:
    client = ollama.Client(host=server.url)
    reply = client.chat(model="sim-a", messages=[{"role": "user", "content": "one two [[n=4]]"}])
    assert reply.message.content and reply.done_reason == "stop" and reply.eval_count == 4
    assert reply.total_duration and reply.total_duration > 0
    parts = list(client.generate(model="sim-echo", prompt="red green blue [[n=3]]", stream=True))
    assert "".join(p.response for p in parts).split() == ["red", "green", "blue"]
    assert parts[-1].done and parts[-1].eval_count == 3
    client.generate(model="sim-echo", keep_alive="-1")  # load only, forever
    ps = {m.model: m for m in client.ps().models}
    assert set(ps) >= {"sim-a", "sim-echo"} and ps["sim-echo"].expires_at is not None
    assert ps["sim-echo"].expires_at.year > 9000 and ps["sim-a"].expires_at.year < 9000  # type: ignore
    unloaded = client.generate(model="sim-echo", keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert "sim-echo" not in {m.model for m in client.ps().models}
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="ghost", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404
    tags = {m.model for m in client.list().models}
    assert {"sim-a", "sim-echo", "sim-slow"} <= tags


def test_raw_framing(server: LiveServer) -> None:
    with httpx.stream("POST", server.url + "/v1/chat/completions", json={
            "model": "sim-a", "stream": True, "messages": [{"role": "user", "content": "a b [[n=5]]"}]}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    events = [block for block in body.split("\n\n") if block and not block.startswith(":")]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    with httpx.stream("POST", server.url + "/api/chat", json={
            "model": "sim-a", "messages": [{"role": "user", "content": "a b [[n=5]]"}]}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert all(not ln["done"] for ln in lines[:-1]) and lines[-1]["done"]
    metrics = httpx.get(server.url + "/metrics").text
    assert 'rkio_http_requests_total{endpoint="/api/chat",status="200"} 1' in metrics
    assert "rkio_memory_budget_bytes 2147483648" in metrics


def test_disconnect_aborts_and_frees_the_lane(server: LiveServer) -> None:
    payload = {"model": "sim-slow", "stream": True, "messages": [{"role": "user", "content": "x [[n=500]]"}]}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=payload, timeout=30) as r:
        for line in r.iter_lines():
            if '"content"' in line and '"content":""' not in line:
                break  # first token seen: leave (500 tokens at 20 ms would take 10 s)
    start = time.monotonic()
    reply = httpx.post(server.url + "/api/generate", timeout=30, json={
        "model": "sim-slow", "prompt": "y [[n=2]]", "stream": False})
    assert reply.status_code == 200 and reply.json()["eval_count"] == 2
    assert time.monotonic() - start < 5, "the abandoned generation kept the lane busy"
    assert 'rkio_client_disconnects_total{endpoint="/v1/chat/completions"} 1' in httpx.get(
        server.url + "/metrics").text


def test_queue_full_is_429_with_retry_after(start_server: Callable[..., LiveServer]) -> None:
    live = start_server("--max-queue", "1")
    try:
        slow = {"model": "sim-slow", "prompt": "z [[n=150]]", "stream": False}
        results: list[int] = []

        def post() -> None:
            results.append(httpx.post(live.url + "/api/generate", json=slow, timeout=60).status_code)

        running = threading.Thread(target=post)
        running.start()
        _wait_for(live, lambda s: s["running"] == 1)
        queued = threading.Thread(target=post)
        queued.start()
        _wait_for(live, lambda s: s["queue_length"] == 1)
        r = httpx.post(live.url + "/v1/completions", json={"model": "sim-slow", "prompt": "q"}, timeout=10)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_error"
        running.join()
        queued.join()
        assert results == [200, 200], "the queued request must be served after the running one"
    finally:
        assert live.stop() == 0, live.log()


def test_requests_in_flight_at_sigterm_end_in_their_protocols_shape(
        start_server: Callable[..., LiveServer]) -> None:
    """After the stop grace the running stream ends with an error event, the waiting requests with a 503
    "shutting down" in their protocol's shape (found by the soak: they got uvicorn's plain-text 500)."""
    live = start_server("--stop-grace", "1")
    results: dict[str, tuple[int, list[str]]] = {}

    def stream(name: str, path: str, body: dict[str, Any]) -> None:
        with httpx.stream("POST", live.url + path, json=body, timeout=60) as r:
            results[name] = (r.status_code, [line for line in r.iter_lines() if line])

    long = {"model": "sim-slow", "stream": True, "messages": [{"role": "user", "content": "x [[n=2000]]"}]}
    queued = {"model": "sim-a", "messages": [{"role": "user", "content": "y [[n=3]]"}]}  # Ollama: streamed
    clients = [threading.Thread(target=stream, args=("running", "/v1/chat/completions", long))]
    clients[0].start()
    _wait_for(live, lambda s: s["running"] == 1)
    clients += [threading.Thread(target=stream, args=("ollama", "/api/chat", queued)),
                threading.Thread(target=stream, args=("openai", "/v1/chat/completions", queued))]  # whole
    for client in clients[1:]:
        client.start()
    _wait_for(live, lambda s: s["queue_length"] == 2)
    live.process.send_signal(signal.SIGTERM)
    for client in clients:
        client.join(timeout=30)
    assert live.process.wait(timeout=30) == 0, live.log()
    status, lines = results["running"]
    assert status == 200 and json.loads(lines[-1].removeprefix("data: "))["error"]["code"] == "shutting_down"
    status, lines = results["ollama"]
    assert (status, [json.loads(line) for line in lines]) == (503, [{"error": "server is shutting down"}])
    status, lines = results["openai"]
    assert status == 503 and json.loads("".join(lines))["error"]["code"] == "shutting_down"


def _wait_for(live: LiveServer, condition: Callable[[dict[str, Any]], bool]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if condition(httpx.get(live.url + "/rkio/status").json()):
            return
        time.sleep(0.02)
    raise AssertionError("engine never reached the expected state")
