"""Streamed replies the runner writes to the client's socket itself (the relay, rkio.engine.chunk_push)
reach the official clients exactly as replies the gateway writes, with the same metrics."""

from __future__ import annotations

import re
from collections.abc import Callable

import anthropic
import httpx
import ollama
import openai
from live_server import LiveServer

PROMPT = 'say "quoted" wörds \\ back slash [[n=25]]'  # JSON escapes and UTF-8 in every chunk


def _streams(live: LiveServer) -> dict[str, str]:
    oa = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)
    ol = ollama.Client(host=live.url)
    an = anthropic.Anthropic(base_url=live.url, api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": PROMPT}]
    chat = oa.chat.completions.create(model="sim-slow", messages=messages, stream=True)  # type: ignore
    completion = oa.completions.create(model="sim-slow", prompt=PROMPT, stream=True)
    with an.messages.stream(model="sim-slow", max_tokens=100, messages=messages) as stream:  # type: ignore
        claude = "".join(stream.text_stream)
    return {
        "anthropic messages": claude,
        "openai chat": "".join(c.choices[0].delta.content or "" for c in chat if c.choices),
        "openai completion": "".join(c.choices[0].text for c in completion if c.choices),
        "ollama chat": "".join(p.message.content or "" for p in ol.chat(model="sim-slow", messages=messages,
                                                                          stream=True)),
        "ollama generate": "".join(p.response for p in ol.generate(model="sim-slow", prompt=PROMPT,
                                                                    stream=True)),
    }


def _metric(text: str, name: str) -> float:
    match = re.search(rf'^{name}{{model="sim-slow"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_relayed_streams_equal_the_gateways_for_every_client(
        start_server: Callable[..., LiveServer]) -> None:
    relayed = start_server()
    written = start_server(env={"RKIO_STREAM_RELAY": "0"})
    replies = {}
    metrics = {}
    for name, live in (("relayed", relayed), ("written", written)):
        replies[name] = _streams(live)
        metrics[name] = httpx.get(live.url + "/metrics").text
    assert replies["relayed"] == replies["written"]
    assert all(len(text.split()) == 25 for text in replies["relayed"].values())  # 25 tokens, none lost
    # the runner wrote all but the first token of each of the five replies...
    assert _metric(metrics["relayed"], "rkio_relayed_tokens_total") >= 5 * 20
    assert _metric(metrics["written"], "rkio_relayed_tokens_total") == 0
    # ... and the inter-token latency saw every gap either way
    gaps = {name: _metric(text, "rkio_inter_token_latency_seconds_count") for name, text in metrics.items()}
    assert gaps["relayed"] == gaps["written"] == 5 * 24
