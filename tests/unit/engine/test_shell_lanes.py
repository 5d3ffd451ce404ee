"""The shell frees the NPU lane only when the runtime has returned, hears of deaths at EOF, and leaves no
orphans. Fake runners gated by asyncio.Event (no sleeps, no timing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from engine_fakes import spec
from fake_runner import FakeFactory, FakeRegistry

from loop_steps import run_ready_callbacks
from rkio.config import Settings
from rkio.engine.engine import ModelEngine
from rkio.engine.scheduler import Scheduler
from rkio.engine.types import ChatMessage, Done, GenerationRequest, TokenChunk
from rkio.errors import InternalError
from rkio.units import GiB

pytestmark = pytest.mark.timeout(10)
HI = (ChatMessage("user", "hi"),)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[ModelEngine, FakeFactory]]:
    factory = FakeFactory()
    settings = Settings(memory_budget=16 * GiB, state_dir=tmp_path, models_dir=tmp_path, npu_lanes=1)
    engine = ModelEngine(settings, FakeRegistry(spec("a"), spec("b")), factory,  # type: ignore[arg-type]
                         mem_probe=lambda: None)
    await engine.start()
    yield engine, factory
    await engine.stop(grace=0)


def req(model: str = "a", **kw: Any) -> GenerationRequest:
    return GenerationRequest(model=model, messages=HI, **kw)


async def collect(engine: ModelEngine, model: str) -> list[Any]:
    return [event async for event in engine.generate(req(model))]


async def test_a_disconnect_during_a_prefill_holds_the_lane_until_the_runtime_returns(env: Any) -> None:
    engine, factory = env
    await engine.load("a")
    await engine.load("b")
    runner = factory.last("a")
    runner.gate, runner.abort_gate = asyncio.Event(), asyncio.Event()  # a prefill that runs to its end
    stream = engine.generate(req("a"))
    reading = asyncio.ensure_future(stream.__anext__())
    sup = engine._sup
    await sup.until(lambda: bool(sup.scheduler.running))
    other = asyncio.ensure_future(collect(engine, "b"))
    await sup.until(lambda: sup.scheduler.queued() == 1)
    reading.cancel()  # how every HTTP disconnect arrives: the task awaiting the next token is cancelled
    await run_ready_callbacks(20)
    assert runner.abort_calls == 1 and runner.running  # the abort is sent, the NPU is still busy
    assert not factory.last("b").generations and sup.scheduler.lanes_used == 1
    runner.abort_gate.set()  # the runtime returns
    events = await other
    assert isinstance(events[-1], Done) and not runner.running
    assert engine.status().counters["cancelled"] == 1 and engine.status().counters["kills"] == 0


async def test_a_runtime_that_ignores_the_abort_is_killed_and_reported_as_killed(env: Any) -> None:
    engine, factory = env
    await engine.load("a")
    runner = factory.last("a")
    runner.gate, runner.abort_ok = asyncio.Event(), False
    stream = engine.generate(req("a"))
    reading = asyncio.ensure_future(stream.__anext__())
    sup = engine._sup
    await sup.until(lambda: bool(sup.scheduler.running))
    queued = asyncio.ensure_future(collect(engine, "a"))
    reading.cancel()
    events = await queued  # served by a fresh runner: the killed one was never treated as idle
    assert isinstance(events[-1], Done)
    assert runner.killed and not factory.last("a").killed and len(factory.runners) == 2
    counters = engine.status().counters
    assert (counters["kills"], counters["crashes"], counters["cancelled"]) == (1, 0, 1)


async def test_a_runner_dead_but_not_reaped_gets_no_grant(env: Any) -> None:
    engine, factory = env
    await engine.load("a")
    runner = factory.last("a")
    runner.reap_gate = asyncio.Event()  # the reap (memory wait, output drain) takes a while
    runner.crash()
    sup = engine._sup
    await sup.until(lambda: sup.scheduler.models["a"].state == "stopping")
    served = asyncio.ensure_future(collect(engine, "a"))
    await run_ready_callbacks(20)
    assert not runner.generations and not served.done()  # never granted to the dead runner
    runner.reap_gate.set()
    events = await served
    assert isinstance(events[-1], Done) and factory.last("a") is not runner
    assert engine.status().counters["crashes"] == 1


async def test_a_cancelled_load_leaves_no_waiter(env: Any) -> None:
    engine, factory = env
    factory.load_gate = asyncio.Event()
    loading = asyncio.ensure_future(engine.load("a"))
    sup = engine._sup
    await sup.until(lambda: bool(sup.scheduler.waiters))
    loading.cancel()
    await sup.until(lambda: not sup.scheduler.waiters)
    assert sup.scheduler.counters["cancelled"] == 1


async def test_a_cancelled_open_lease_leaves_no_lease_and_the_model_can_be_unloaded(env: Any) -> None:
    engine, factory = env
    factory.load_gate = asyncio.Event()
    opening = asyncio.ensure_future(engine.open_lease("a"))
    sup = engine._sup
    await sup.until(lambda: bool(sup.scheduler.waiters))
    finish = sup.finish

    def finish_then_cancel(request_id: int, error: Any) -> None:
        finish(request_id, error)
        assert sup.scheduler.leases  # registered for a caller that is cancelled before it reads the id
        opening.cancel()

    sup.finish = finish_then_cancel  # type: ignore[method-assign]
    factory.load_gate.set()
    with pytest.raises(asyncio.CancelledError):
        await opening
    sup.finish = finish  # type: ignore[method-assign]
    await sup.until(lambda: not sup.scheduler.leases)
    await engine.unload("a")
    assert engine.status().loaded == ()


async def test_a_scheduler_fault_ends_every_request_stops_runners_and_keeps_serving(
        env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, factory = env
    await engine.load("a")
    runner = factory.last("a")
    runner.gate = asyncio.Event()
    running = asyncio.ensure_future(collect(engine, "a"))
    sup = engine._sup
    await sup.until(lambda: bool(sup.scheduler.running))
    queued = asyncio.ensure_future(collect(engine, "b"))
    await sup.until(lambda: sup.scheduler.queued() == 1)

    def broken(self: Scheduler, ev: Any, now: float) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(Scheduler, "on_unload", broken)
    with pytest.raises(InternalError):  # the call that hit the bug gets the same explicit error
        await engine.unload("a")
    with pytest.raises(InternalError):
        await running
    with pytest.raises(InternalError):
        await queued
    assert runner.killed and sup.faults == 1
    monkeypatch.undo()
    events = await collect(engine, "a")  # a fresh scheduler, a fresh runner
    assert isinstance(events[-1], Done) and factory.last("a") is not runner
    assert "".join(e.text for e in events if isinstance(e, TokenChunk)) == "Hello world!"


async def test_stop_reaps_every_runner(tmp_path: Path) -> None:
    factory = FakeFactory()
    engine = ModelEngine(Settings(memory_budget=16 * GiB, state_dir=tmp_path, stop_grace=0.01),
                         FakeRegistry(spec("a")), factory, mem_probe=lambda: None)  # type: ignore[arg-type]
    await engine.start()
    await engine.load("a")
    factory.last("a").gate, factory.last("a").abort_ok = asyncio.Event(), False
    task = asyncio.ensure_future(collect(engine, "a"))
    await engine._sup.until(lambda: bool(engine._sup.scheduler.running))
    await engine.stop(grace=0)
    assert all(r.wait_done() for r in factory.runners)
    task.cancel()
