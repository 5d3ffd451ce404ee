"""Fixtures: the app over a fake engine, an httpx client on it, and SSE / NDJSON parsing helpers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fake_engine import FakeEngine
from starlette.applications import Starlette

from rkio.api.app import create_app
from rkio.config import Settings


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def app(engine: FakeEngine, settings: Settings) -> Starlette:
    return create_app(engine, settings, manage_engine=False)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rkio.test") as c:
        yield c


def sse_events(body: str) -> list[Any]:
    """``data:`` payloads of an SSE body, JSON-decoded except ``[DONE]``; asserts the framing."""
    assert body.endswith("\n\n"), "every SSE event ends with a blank line"
    events: list[Any] = []
    for block in body.split("\n\n")[:-1]:
        lines = [ln for ln in block.split("\n") if not ln.startswith(":")]
        if not lines:
            continue
        assert len(lines) == 1 and lines[0].startswith("data: "), block
        payload = lines[0][len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def ndjson_lines(body: str) -> list[dict[str, Any]]:
    assert body.endswith("\n")
    return [json.loads(line) for line in body.splitlines()]
