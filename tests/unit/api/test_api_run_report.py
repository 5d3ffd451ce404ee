"""A request the runtime cannot fully apply still runs, and every response says what applied (issue 11).

The fake engine plans with the real ``rkio.engine.run_plan`` over rkllm 1.2.3's features (no per-run
sampling, no seed), 1.3.0's, or llama.cpp's ("llama").
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_helpers import ndjson_lines, sse_events
from fake_engine import RKLLM_1_3_0, FakeEngine

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi there"}]


def _chat(model: str = "qwen", stream: bool = False, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES, "stream": stream, **fields}


@pytest.mark.parametrize("stream", [False, True])
async def test_openai_sampling_on_an_abi_without_per_run_sampling_runs_with_the_loaded_one(
        client: httpx.AsyncClient, engine: FakeEngine, stream: bool) -> None:
    r = await client.post(CHAT, json=_chat(stream=stream, temperature=0.2, top_p=0.5, seed=4))
    assert r.status_code == 200
    assert r.headers["x-rkio-sampling"] == "loaded"
    assert r.headers["x-rkio-not-applied"] == "sampling,seed"
    if stream:
        assert sse_events(r.text)[-1] == "[DONE]"
    else:
        assert r.json()["choices"][0]["message"]["content"] == "hi there"
    assert engine.requests[-1].sampling is not None  # passed on: the engine decides, never the API


async def test_per_run_sampling_is_reported_as_applied(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.rkllm_features = RKLLM_1_3_0
    r = await client.post(CHAT, json=_chat(temperature=0.2))
    assert r.headers["x-rkio-sampling"] == "request" and "x-rkio-not-applied" not in r.headers
    r = await client.post(CHAT, json=_chat(seed=9))
    assert (r.headers["x-rkio-sampling"], r.headers["x-rkio-not-applied"]) == ("request", "seed")


async def test_no_sampling_asked_means_loaded_and_nothing_left_out(client: httpx.AsyncClient) -> None:
    r = await client.post(CHAT, json=_chat(max_tokens=1, reasoning_effort="high"))
    assert r.status_code == 200
    assert r.headers["x-rkio-sampling"] == "loaded" and "x-rkio-not-applied" not in r.headers


async def test_llama_cpp_applies_sampling_and_seed_per_run(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/completions", json={"model": "llama", "prompt": "a b", "temperature": 0.1,
                                                   "seed": 3})
    assert r.headers["x-rkio-sampling"] == "request" and "x-rkio-not-applied" not in r.headers


async def test_raw_thinking_request_on_an_old_abi_is_served_and_names_what_it_lacked(
        client: httpx.AsyncClient, engine: FakeEngine) -> None:
    engine.rkllm_features = frozenset()  # the 1.1 generation lacks enable_thinking too
    r = await client.post("/api/generate", json={"model": "qwen", "prompt": "a b", "raw": True, "think": True,
                                                 "stream": False, "options": {"temperature": 0.3}})
    assert r.status_code == 200
    assert r.headers["x-rkio-not-applied"] == "sampling,enable_thinking"


async def test_ollama_streams_carry_the_headers_even_when_committed_before_the_first_token(
        client: httpx.AsyncClient, engine: FakeEngine) -> None:
    r = await client.post("/api/chat", json={"model": "qwen", "messages": MESSAGES,
                                             "options": {"temperature": 0.9, "top_k": 5}})
    assert r.status_code == 200 and ndjson_lines(r.text)[-1]["done"] is True
    assert (r.headers["x-rkio-sampling"], r.headers["x-rkio-not-applied"]) == ("loaded", "sampling")


async def test_access_log_and_metrics_name_what_was_not_applied(
        client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="rkio.access")
    await client.post(CHAT, json=_chat(temperature=0.2))
    [line] = [r.getMessage() for r in caplog.records if r.name == "rkio.access" and "chat" in r.getMessage()]
    assert "sampling=loaded" in line and "not_applied=sampling" in line
    metrics = (await client.get("/metrics")).text
    assert 'rkio_settings_not_applied_total{model="qwen",setting="sampling"} 1' in metrics


async def test_chat_images_are_named_as_not_applied(client: httpx.AsyncClient) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    r = await client.post(CHAT, json=_chat(messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"}, image]}]))
    assert r.status_code == 200 and r.headers["x-rkio-not-applied"] == "images"
