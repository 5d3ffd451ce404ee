"""The real default model (SmolLM2 135M Instruct) answers through the OpenAI and Ollama APIs of a live
server, with the official clients: chat answers end by themselves (finish "stop"), and so does a raw
completion whose prompt is a chat turn written out by hand."""

from __future__ import annotations

from typing import Any

import ollama
import openai
import pytest
from cpu_server import MODEL, Server

pytestmark = pytest.mark.model

QUESTION: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]
# The same turn in SmolLM2's ChatML, as its template renders it (with the model.toml system prompt)
RAW_TURN = ("<|im_start|>system\nYou are a helpful assistant. Give short, plain answers.<|im_end|>\n"
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")


def openai_client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")


def test_openai_chat_completion_ends_by_itself(server: Server) -> None:
    reply = openai_client(server).chat.completions.create(model=MODEL, messages=QUESTION, temperature=0)
    choice = reply.choices[0]
    assert choice.message.content and "Paris" in choice.message.content
    assert choice.finish_reason == "stop"
    assert reply.usage is not None and 0 < reply.usage.completion_tokens < 30


def test_openai_chat_ends_at_a_stop_string(server: Server) -> None:
    reply = openai_client(server).chat.completions.create(model=MODEL, messages=QUESTION, temperature=0,
                                                          stop=[" is"])
    assert reply.choices[0].message.content == "The capital of France"
    assert reply.choices[0].finish_reason == "stop"


def test_openai_streaming_chat_is_the_same_answer(server: Server) -> None:
    client = openai_client(server)
    whole = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0)
    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, temperature=0, stream=True)
    text, finish, chunks = "", None, 0
    for chunk in stream:
        if chunk.choices:
            chunks += 1
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert text == whole.choices[0].message.content and finish == "stop" and chunks > 3


def test_openai_max_tokens_cuts_an_answer(server: Server) -> None:
    reply = openai_client(server).chat.completions.create(model=MODEL, messages=QUESTION, temperature=0,
                                                          max_tokens=3)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 3


def test_openai_raw_completion_of_a_written_out_turn_ends_by_itself(server: Server) -> None:
    reply = openai_client(server).completions.create(model=MODEL, prompt=RAW_TURN, temperature=0,
                                                     max_tokens=100)
    assert "Paris" in reply.choices[0].text and "<|im_end|>" not in reply.choices[0].text
    assert reply.choices[0].finish_reason == "stop"


def test_ollama_chat(server: Server) -> None:
    reply = ollama.Client(host=server.url).chat(model=MODEL, messages=QUESTION, options={"temperature": 0})
    assert reply.message.content and "Paris" in reply.message.content
    assert reply.done_reason == "stop"


def test_ollama_raw_generate_ends_by_itself(server: Server) -> None:
    parts = list(ollama.Client(host=server.url).generate(model=MODEL, prompt=RAW_TURN, raw=True, stream=True,
                                                         options={"temperature": 0, "num_predict": 100}))
    assert "Paris" in "".join(p.response for p in parts)
    assert parts[-1].done and parts[-1].done_reason == "stop"
    assert parts[-1].eval_count is not None and parts[-1].eval_count < 30
