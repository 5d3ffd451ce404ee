"""The real Gemma 3 270M answers through the OpenAI and Ollama APIs of a live server (official clients).

The default model is the *pretrained* Gemma 3 270M: it answers a few-shot chat correctly but never
predicts <end_of_turn>, so chat answers end through a stop string or max_tokens, and a generation ends
by itself (finish "stop") where the model emits <eos>: after a complete JSON document.
"""

from __future__ import annotations

from typing import Any

import ollama
import openai
import pytest
from cpu_server import MODEL, Server

pytestmark = pytest.mark.model

FEW_SHOT: list[Any] = [
    {"role": "user", "content": "What is the capital of Italy?"},
    {"role": "assistant", "content": "Rome"},
    {"role": "user", "content": "What is the capital of France?"},
]
DOCUMENT = '{"name": "Paris", "country": "France"}'


def test_openai_chat_completion(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    reply = client.chat.completions.create(model=MODEL, messages=FEW_SHOT, temperature=0, max_tokens=8)
    choice = reply.choices[0]
    assert choice.message.content and choice.message.content.startswith("Paris")
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8


def test_openai_chat_ends_at_a_stop_string(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    reply = client.chat.completions.create(model=MODEL, messages=FEW_SHOT, temperature=0, max_tokens=50,
                                           stop=["\n"])
    assert reply.choices[0].message.content == "Paris"
    assert reply.choices[0].finish_reason == "stop"


def test_openai_streaming_chat(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    stream = client.chat.completions.create(model=MODEL, messages=FEW_SHOT, temperature=0, max_tokens=50,
                                            stop=["\n"], stream=True)
    text, finish = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert text == "Paris" and finish == "stop"


def test_openai_completion_ends_by_itself(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    reply = client.completions.create(model=MODEL, prompt=DOCUMENT, temperature=0, max_tokens=100)
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens < 10


def test_ollama_chat(server: Server) -> None:
    reply = ollama.Client(host=server.url).chat(model=MODEL, messages=FEW_SHOT,
                                                options={"temperature": 0, "stop": ["\n"]})
    assert reply.message.content == "Paris" and reply.done_reason == "stop"


def test_ollama_raw_generate_ends_by_itself(server: Server) -> None:
    parts = list(ollama.Client(host=server.url).generate(model=MODEL, prompt=DOCUMENT, raw=True, stream=True,
                                                         options={"temperature": 0, "num_predict": 100}))
    assert parts[-1].done and parts[-1].done_reason == "stop"
    assert parts[-1].eval_count is not None and parts[-1].eval_count < 10
