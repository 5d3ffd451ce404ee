"""Ordinary OpenAI requests with sampling succeed on rkllm 1.2.3 and 1.3.0, and the response headers say
what applied, streamed or not (issue 11: 1.2.x answered 400 "per-request sampling is not supported")."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest
from live_server import LiveServer

MESSAGES = [{"role": "user", "content": "warm words [[n=6]]"}]


@pytest.mark.parametrize(("flavour", "sampling", "not_applied"),
                         [("1.2.3", "loaded", "sampling,seed"), ("1.3.0", "request", "seed")])
def test_openai_client_sees_what_applied(start_server: Callable[..., LiveServer], flavour: str,
                                         sampling: str, not_applied: str) -> None:
    server = start_server(flavour=flavour)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="sim-a", messages=MESSAGES, temperature=0.3, top_p=0.7, seed=5, max_tokens=4)  # type: ignore
    assert raw.status_code == 200
    assert (raw.headers["x-rkio-sampling"], raw.headers["x-rkio-not-applied"]) == (sampling, not_applied)
    reply = raw.parse()
    assert reply.choices[0].finish_reason == "length" and reply.usage and reply.usage.completion_tokens == 4
    streamed = client.chat.completions.with_raw_response.create(
        model="sim-a", messages=MESSAGES, temperature=0.3, stream=True)  # type: ignore
    assert streamed.headers["x-rkio-sampling"] == sampling
    text = "".join(c.choices[0].delta.content or "" for c in streamed.parse() if c.choices)
    assert "warm" in text
    plain = client.chat.completions.with_raw_response.create(model="sim-a", messages=MESSAGES)  # type: ignore
    assert plain.headers["x-rkio-sampling"] == "loaded" and "x-rkio-not-applied" not in plain.headers
    assert server.stop() == 0, server.log()
    assert "sampling=" in server.log()  # the access log says it too
