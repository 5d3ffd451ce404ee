"""The real default model on a live CPU server: structured output enforced by llama.cpp's grammar (OpenAI,
Ollama, Anthropic clients) and the Anthropic Messages API (streamed and not, stop sequences, count_tokens
with the model's own tokenizer, errors).

The schemas use an ``enum`` so that the grammar leaves the model one short, complete answer whatever model
is the default: the test checks enforcement, not the model's knowledge.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import ollama
import openai
import pytest
from cpu_server import MODEL, Server

pytestmark = pytest.mark.model

SCHEMA: Any = {"type": "object", "properties": {"capital": {"type": "string", "enum": ["Paris", "Rome"]}},
               "required": ["capital"], "additionalProperties": False}
FORMAT: Any = {"type": "json_schema", "json_schema": {"name": "capital", "strict": True, "schema": SCHEMA}}
QUESTION: Any = [{"role": "user", "content": "What is the capital of France? Answer in JSON."}]
FEW_SHOT: Any = [
    {"role": "user", "content": "What is the capital of Italy?"},
    {"role": "assistant", "content": "Rome"},
    {"role": "user", "content": "What is the capital of France?"},
]


def _capital(text: str) -> str:
    value = json.loads(text)
    assert set(value) == {"capital"}
    return str(value["capital"])


def test_openai_json_schema_is_enforced(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=QUESTION, response_format=FORMAT, temperature=0, max_tokens=40)
    assert raw.headers["x-rkio-structured-output"] == "enforced"
    reply = raw.parse()
    assert _capital(reply.choices[0].message.content or "") in ("Paris", "Rome")
    assert reply.choices[0].finish_reason == "stop"  # the grammar's end leaves only the end of the reply
    stream = client.chat.completions.create(model=MODEL, messages=QUESTION, response_format=FORMAT,
                                            temperature=0, max_tokens=40, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert _capital(text) in ("Paris", "Rome")


def test_ollama_format_is_enforced(server: Server) -> None:
    client = ollama.Client(host=server.url)
    reply = client.chat(model=MODEL, messages=QUESTION, format=SCHEMA,
                        options={"temperature": 0, "num_predict": 40})
    assert _capital(reply.message.content or "") in ("Paris", "Rome")
    generated = client.generate(model=MODEL, prompt="The capital of France as JSON:", format="json",
                                options={"temperature": 0, "num_predict": 60})
    if generated.done_reason == "stop":  # a free-form object may not close within the budget
        assert isinstance(json.loads(generated.response), dict)
    else:
        assert generated.response.lstrip().startswith("{")


def test_anthropic_messages_stream_and_not(server: Server) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    reply = client.messages.create(model=MODEL, max_tokens=20, messages=FEW_SHOT, stop_sequences=["\n"],
                                   extra_body={"temperature": 0})
    text = "".join(b.text for b in reply.content if b.type == "text")
    assert "Paris" in text  # a base model answers "Paris", an instruction-tuned one in a sentence
    assert reply.stop_reason in ("stop_sequence", "end_turn", "max_tokens")
    if reply.stop_reason == "stop_sequence":
        assert reply.stop_sequence == "\n"
    assert reply.usage.input_tokens > 0 and 0 < reply.usage.output_tokens <= 20
    with client.messages.stream(model=MODEL, max_tokens=20, messages=FEW_SHOT, stop_sequences=["\n"],
                                extra_body={"temperature": 0}) as stream:
        streamed = stream.get_final_message()
    assert "".join(b.text for b in streamed.content if b.type == "text") == text
    assert streamed.usage.input_tokens == reply.usage.input_tokens
    assert streamed.stop_reason == reply.stop_reason
    counted = client.messages.with_raw_response.count_tokens(model=MODEL, messages=FEW_SHOT)
    assert counted.headers["x-rkio-token-count"] == "exact"
    assert counted.parse().input_tokens == reply.usage.input_tokens  # the same tokenizer and template


def test_anthropic_output_format_and_errors(server: Server) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    raw = client.messages.with_raw_response.create(
        model=MODEL, max_tokens=40, messages=QUESTION, extra_body={"temperature": 0},
        output_config={"format": {"type": "json_schema", "schema": SCHEMA}})
    assert raw.headers["x-rkio-structured-output"] == "enforced"
    block = raw.parse().content[0]
    assert block.type == "text" and _capital(block.text) in ("Paris", "Rome")
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="no-such-model", max_tokens=5, messages=QUESTION)
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model=MODEL, max_tokens=5,
                               messages=[{"role": "user", "content": "w " * 40000}])
    assert "context" in bad.value.message
