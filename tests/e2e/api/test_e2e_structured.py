"""Structured output on a live server over the simulated rkllm runtime (no constrained decoding there): the
reply is validated, retried with the error fed back, and refused with a clear 422 when it never passes.

sim-echo shows the model only the last message and echoes it, so a user message that *is* the JSON comes
back valid, and after a failure the echoed feedback message is not JSON: every retry fails too.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import ollama
import openai
import pytest
from live_server import LiveServer

SCHEMA: Any = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "number"}},
               "required": ["city", "temp"]}
FORMAT: Any = {"type": "json_schema", "json_schema": {"name": "weather", "strict": True, "schema": SCHEMA}}
GOOD = '{"city":"Paris","temp":21}'
PARTIAL = '{"city":"Paris"}'


def ask(text: str) -> Any:
    return [{"role": "user", "content": f"{text} [[n=1]]"}]


def test_openai_response_format_validated(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="sim-echo", messages=ask(GOOD),
                                                           response_format=FORMAT)
    assert raw.headers["x-rkio-structured-output"] == "validated"
    assert json.loads(raw.parse().choices[0].message.content or "") == {"city": "Paris", "temp": 21}
    streamed = client.chat.completions.with_raw_response.create(
        model="sim-echo", messages=ask(GOOD), response_format={"type": "json_object"}, stream=True)
    assert streamed.headers["x-rkio-structured-output"] == "validated"
    text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    assert json.loads(text) == {"city": "Paris", "temp": 21}


def test_openai_gives_up_after_the_retries(server: LiveServer) -> None:
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.chat.completions.create(model="sim-echo", messages=ask(PARTIAL), response_format=FORMAT)
    assert info.value.code == "output_validation_failed" and "after 3 attempts" in info.value.message
    with pytest.raises(openai.UnprocessableEntityError):
        list(client.chat.completions.create(model="sim-echo", messages=ask(PARTIAL), response_format=FORMAT,
                                            stream=True))
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="sim-echo", messages=ask(GOOD), response_format={
            "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 12}}})
    assert "not a valid JSON schema" in bad.value.message


def test_ollama_format_validated(server: LiveServer) -> None:
    client = ollama.Client(host=server.url)
    reply = client.chat(model="sim-echo", messages=ask(GOOD), format=SCHEMA)
    assert json.loads(reply.message.content or "") == {"city": "Paris", "temp": 21}
    parts = list(client.generate(model="sim-echo", prompt=f"{GOOD} [[n=1]]", format="json", stream=True))
    assert json.loads("".join(p.response for p in parts)) == {"city": "Paris", "temp": 21}
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="sim-echo", messages=ask(PARTIAL), format=SCHEMA)
    assert info.value.status_code == 422 and "after 3 attempts" in info.value.error


def test_anthropic_output_format_validated(server: LiveServer) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    output: Any = {"format": {"type": "json_schema", "schema": SCHEMA}}
    raw = client.messages.with_raw_response.create(model="sim-echo", max_tokens=20, messages=ask(GOOD),
                                                   output_config=output)
    assert raw.headers["x-rkio-structured-output"] == "validated"
    block = raw.parse().content[0]
    assert block.type == "text" and json.loads(block.text) == {"city": "Paris", "temp": 21}
    with pytest.raises(anthropic.UnprocessableEntityError) as info:
        client.messages.create(model="sim-echo", max_tokens=20, messages=ask(PARTIAL), output_config=output)
    assert info.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
