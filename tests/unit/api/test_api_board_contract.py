"""rkio's side of the contract with a router in front of several boards: the board header on every response,
``/v1/models`` listing only what this board can serve, ``/ready`` false while draining or when nothing can be
served, and a full queue answered with 429 and ``Retry-After``."""

from __future__ import annotations

import asyncio
import email.utils
import json

import httpx
import pytest
from fake_engine import FakeEngine

from loop_steps import run_ready_callbacks
from rkio.api.app import create_app
from rkio.config import Settings
from rkio.engine.types import RuntimeKind
from rkio.errors import ConfigError

MSG = [{"role": "user", "content": "a b"}]


def client_for(engine: FakeEngine, runtimes: tuple[RuntimeKind, ...] | None = None,
               **settings: object) -> httpx.AsyncClient:
    app = create_app(engine, Settings(**settings), manage_engine=False,  # type: ignore[arg-type]
                     runtimes=runtimes)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://rkio.test")


async def test_every_response_names_the_board(engine: FakeEngine) -> None:
    async with client_for(engine, board_name="opi5-2", api_key="k") as c:
        auth = {"Authorization": "Bearer k"}
        ok = await c.post("/v1/chat/completions", json={"model": "qwen", "messages": MSG}, headers=auth)
        missing = await c.post("/v1/chat/completions", json={"model": "nope", "messages": MSG}, headers=auth)
        denied = await c.get("/v1/models")
        async with c.stream("POST", "/api/chat", json={"model": "qwen", "messages": MSG}, headers=auth) as s:
            streamed = s.headers.get("x-rkio-board"), s.headers.get("date")
            lines = [line async for line in s.aiter_lines() if line]
        health = await c.get("/health")
    assert [r.status_code for r in (ok, missing, denied)] == [200, 404, 401]
    assert {r.headers["x-rkio-board"] for r in (ok, missing, denied, health)} == {"opi5-2"}
    assert streamed[0] == "opi5-2"
    # the Date header is rkio's (uvicorn's own is off: it woke the server every 0.1 s for it)
    for date in (*(r.headers["date"] for r in (ok, missing, denied, health)), streamed[1]):
        assert email.utils.parsedate_to_datetime(date).tzinfo is not None
    # every token chunk arrives, though they go past the middleware (rkio.api.direct_body)
    assert "".join(json.loads(line)["message"]["content"] for line in lines) == "a b"


def test_no_middleware_the_token_chunks_skip_rewrites_bodies(engine: FakeEngine) -> None:
    # rkio.api.direct_body sends token chunks past every middleware of the app: one that rewrites bodies
    # (compression, say) would be skipped silently, so adding any middleware must be a decision made here
    from starlette.middleware.cors import CORSMiddleware

    from rkio.api.access import RequestLog
    from rkio.api.auth import ApiKeyAuth, BodyLimit
    from rkio.api.response_headers import ResponseHeaders

    app = create_app(engine, Settings(api_key="k", cors_origins=("http://x",)), manage_engine=False)
    assert {m.cls for m in app.user_middleware} <= {ResponseHeaders, CORSMiddleware, RequestLog, ApiKeyAuth,
                                                    BodyLimit}


def test_board_name_defaults_to_a_header_safe_host_name() -> None:
    assert Settings().board_name
    with pytest.raises(ConfigError, match="--board-name"):
        Settings.load(None, {"board_name": "bad name\r\nx"})


async def test_models_lists_only_what_this_board_can_serve(engine: FakeEngine) -> None:
    # qwen is an .rkllm model, llama a .gguf one (fake_engine.spec)
    async with client_for(engine, runtimes=("rkllm",)) as c:
        assert [m["id"] for m in (await c.get("/v1/models")).json()["data"]] == ["qwen"]
        engine.quarantined = ("qwen",)
        assert (await c.get("/v1/models")).json()["data"] == []
        r = await c.get("/ready")
        assert r.status_code == 503 and r.json()["reason"] == "every model is quarantined"
        assert (await c.get("/api/tags")).json()["models"] == []  # Ollama's list says the same
    async with client_for(engine, runtimes=("rkllm", "llamacpp")) as c:
        assert [m["id"] for m in (await c.get("/v1/models")).json()["data"]] == ["llama"]
        assert [m["name"] for m in (await c.get("/api/tags")).json()["models"]] == ["llama"]


async def test_not_ready_without_a_runtime_for_any_model(engine: FakeEngine) -> None:
    engine.names = ("qwen",)
    async with client_for(engine, runtimes=("llamacpp",)) as c:
        r = await c.get("/ready")
        assert r.status_code == 503
        assert "no runtime installed for the models here (rkllm)" in r.json()["reason"]
        assert (await c.get("/v1/models")).json()["data"] == []
    async with client_for(engine, runtimes=()) as c:
        assert (await c.get("/ready")).status_code == 503


async def test_a_model_larger_than_the_budget_is_not_listed(engine: FakeEngine,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    status = engine.status
    monkeypatch.setattr(engine, "status", lambda: dataclasses.replace(status(), budget_bytes=512 << 20))
    async with client_for(engine) as c:  # the fake's models are 1 GiB files
        assert (await c.get("/v1/models")).json()["data"] == []
        r = await c.get("/ready")
        assert r.status_code == 503
        assert r.json()["reason"] == "no model fits the memory budget (--memory-budget)"


async def test_ready_turns_false_once_draining(engine: FakeEngine) -> None:
    app = create_app(engine, Settings(), manage_engine=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rkio.test") as c:
        assert (await c.get("/ready")).json()["status"] == "ready"
        app.state.readiness.draining = True
        r = await c.get("/ready")
        assert r.status_code == 503 and r.json() == {"status": "not ready",
                                                     "reason": "the server is shutting down"}
        assert (await c.get("/health")).status_code == 200  # still alive: in-flight requests finish


async def test_full_queue_is_429_with_retry_after_in_both_protocols(engine: FakeEngine) -> None:
    engine.queue_full = True
    async with client_for(engine) as c:
        openai = await c.post("/v1/chat/completions", json={"model": "qwen", "messages": MSG})
        ollama = await c.post("/api/chat", json={"model": "qwen", "messages": MSG, "stream": False})
    assert openai.status_code == ollama.status_code == 429
    assert openai.headers["retry-after"] == ollama.headers["retry-after"] == "3"  # 2.5 s, rounded up
    assert openai.json()["error"]["type"] == "rate_limit_error"


def test_sigterm_turns_ready_false_as_the_drain_begins(engine: FakeEngine) -> None:
    import signal

    import uvicorn

    from rkio.cli.serve import QuietExitServer

    app = create_app(engine, Settings(), manage_engine=False)
    server = QuietExitServer(uvicorn.Config(app), app.state.readiness)
    assert not app.state.readiness.draining
    server.handle_exit(signal.SIGTERM, None)
    assert app.state.readiness.draining and server.should_exit


async def test_an_exit_request_wakes_the_server_loop_at_once(engine: FakeEngine) -> None:
    # the loop never ticks on its own (no idle wake-ups on a board): setting should_exit, from any
    # thread, is what ends it
    import threading

    import uvicorn

    from rkio.cli.serve import QuietExitServer

    app = create_app(engine, Settings(), manage_engine=False)
    server = QuietExitServer(uvicorn.Config(app), app.state.readiness)
    server.server_state = uvicorn.server.ServerState()
    loop_task = asyncio.ensure_future(server.main_loop())
    await run_ready_callbacks()  # one turn of the ready queue: the loop is waiting now
    assert not loop_task.done()
    other = threading.Thread(target=setattr, args=(server, "should_exit", True))
    other.start()
    other.join()
    await asyncio.wait_for(loop_task, 10)  # a bound for a broken loop; a working one returns at once
