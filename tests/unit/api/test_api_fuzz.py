"""Fuzzing: schemathesis over the published OpenAPI document, and arbitrary JSON thrown at every POST route.
Whatever arrives, the answer is never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import httpx
import schemathesis
from fake_engine import FakeEngine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from rkio.api.app import create_app
from rkio.config import Settings

APP = create_app(FakeEngine(), Settings(max_body_bytes=64 << 10), manage_engine=False)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.phases.coverage.enabled = False  # the exhaustive coverage phase alone takes ~20 s on 2 cores


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_schema_fuzz_never_5xx(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
plausible = st.fixed_dictionaries(
    {"model": st.sampled_from(["qwen", "llama", "", "../x", "qwen:latest"]) | st.text()},
    optional={
        "messages": json_values
        | st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "system", "assistant", "tool", "x"]),
                    "content": st.text() | json_values,
                }
            ),
            max_size=3,
        ),
        "prompt": st.text() | json_values,
        "stream": json_values,
        "options": json_values,
        "keep_alive": json_values,
        "tools": json_values,
        "stop": json_values,
        "max_tokens": json_values,
        "n": json_values,
        "format": json_values,
        "think": json_values,
        "response_format": json_values,
        "system": json_values,
        "stop_sequences": json_values,
        "tool_choice": json_values,
        "thinking": json_values,
        "output_config": json_values,
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(["/v1/chat/completions", "/v1/completions", "/api/chat", "/api/generate", "/api/show",
                     "/v1/messages", "/v1/messages/count_tokens"]),
    json_values | plausible,
)
async def test_arbitrary_json_never_5xx(path: str, body: Any) -> None:
    transport = httpx.ASGITransport(app=APP, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://rkio.test") as client:
        r = await client.post(path, content=json.dumps(body, allow_nan=True))
    assert r.status_code < 500, r.text
    assert r.headers["content-type"].startswith(
        ("application/json", "text/event-stream", "application/x-ndjson")
    )
