"""Fixtures: the app over a fake engine, an httpx client on it, and SSE / NDJSON parsing helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

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
