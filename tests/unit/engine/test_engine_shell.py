"""The asyncio shell and ModelEngine with fake runners gated by asyncio.Event (no sleeps)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from engine_fakes import spec
from fake_runner import FakeFactory, FakeRegistry

from rkio.config import Settings
from rkio.engine.chunk_push import ChunkPush
from rkio.engine.engine import ModelEngine
from rkio.engine.events import TokenStall
from rkio.engine.types import ChatMessage, Done, GenerationRequest, Loading, Queued, TokenChunk
from rkio.errors import (
    GenerationTimeout,
    InsufficientMemory,
    LoadFailed,
    ModelNotFound,
    RunnerCrashed,
    ShuttingDown,
)
from rkio.units import GiB

pytestmark = pytest.mark.timeout(10)
HI = (ChatMessage("user", "hi"),)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[ModelEngine, FakeFactory]]:
    factory = FakeFactory()
    settings = Settings(memory_budget=16 * GiB, state_dir=tmp_path, models_dir=tmp_path)
    registry = FakeRegistry(spec("a"), spec("b"), spec("cpu", runtime="llamacpp"), spec("huge", 20 * GiB))
    engine = ModelEngine(settings, registry, factory, mem_probe=lambda: None)  # type: ignore[arg-type]
    await engine.start()
    yield engine, factory
    await engine.stop(grace=0)


def req(model: str = "a", **kw: Any) -> GenerationRequest:
    return GenerationRequest(model=model, messages=HI, **kw)


async def collect(engine: ModelEngine, request: GenerationRequest) -> list[Any]:
    return [event async for event in engine.generate(request)]


async def test_generate_loads_streams_and_reports_usage_and_timings(env: Any) -> None:
    engine, factory = env
    events = await collect(engine, req())
    assert events[0] == Loading("a")
    assert "".join(e.text for e in events if isinstance(e, TokenChunk)) == "Hello world!"
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "stop"
    assert done.usage.prompt_tokens == 3 and done.usage.completion_tokens == 3
    assert done.timings.load_s is not None and done.timings.ttft_s is not None
    assert done.timings.prefill_s == pytest.approx(0.005)
    assert factory.last("a").generations[0].messages == HI
    again = await collect(engine, req())
    assert not any(isinstance(e, Loading | Queued) for e in again) and again[-1].timings.load_s is None
    assert len(factory.runners) == 1


async def test_chunks_the_consumer_takes_are_not_yielded_and_still_time_the_first_token(env: Any) -> None:
    engine, factory = env
    push, taken = ChunkPush(), []
    push.take = lambda chunk: taken.append(chunk.text) is None and len(taken) < 3  # refuses the 3rd
    events = [event async for event in engine.generate(req(), push)]
    assert taken == ["Hello", " world", "!"]  # the refused one is yielded instead
    assert [e.text for e in events if isinstance(e, TokenChunk)] == ["!"]
    done = events[-1]
    assert isinstance(done, Done) and done.timings.ttft_s is not None  # the first token was a pushed one
    assert factory.last("a").pushed == 2


async def test_unknown_model(env: Any) -> None:
    engine, _ = env
    with pytest.raises(ModelNotFound):
        await collect(engine, req("nope"))


async def test_second_request_queues_and_closing_the_stream_frees_the_lane(env: Any) -> None:
    engine, factory = env
    await engine.load("a")
    runner = factory.last("a")
    runner.gate = asyncio.Event()
    first = engine.generate(req())
    runner.gate.set()
    assert isinstance(await first.__anext__(), TokenChunk)
    second = engine.generate(req())
    assert await second.__anext__() == Queued(0)
    await first.aclose()  # the client goes away mid-stream
    sup = engine._sup
    await sup.until(lambda: sup.scheduler.counters["cancelled"] == 1)
    assert runner.closed
    runner.gate = None
    rest = [e async for e in second]
    assert isinstance(rest[-1], Done)
    assert engine.status().counters["cancelled"] == 1


async def test_stall_aborts_and_kills_a_runner_that_ignores_abort(env: Any) -> None:
    engine, factory = env
    await engine.load("a")
    runner = factory.last("a")
    runner.gate, runner.abort_ok = asyncio.Event(), False
    stream = engine.generate(req())
    task = asyncio.ensure_future(stream.__anext__())
    sup = engine._sup
    await sup.until(lambda: bool(sup.scheduler.running))
    [rid] = sup.scheduler.running
    sup.post(TokenStall(rid, first_token=True))
    with pytest.raises(GenerationTimeout):
        await task
    assert runner.killed
    await sup.until(lambda: "a" not in sup.scheduler.models)
    status = engine.status()
    # the kill was rkio's own: counted as a kill, never as a crash towards quarantine
    assert (status.counters["kills"], status.counters["crashes"], status.running) == (1, 0, 0)


async def test_crash_mid_generation_raises_and_next_request_reloads(env: Any) -> None:
    engine, factory = env
    await engine.load("a")
    factory.last("a").crash_at = 1
    with pytest.raises(RunnerCrashed, match="SIGSEGV"):
        await collect(engine, req())
    events = await collect(engine, req())
    assert isinstance(events[-1], Done) and len(factory.runners) == 2
    assert engine.status().counters["crashes"] == 1


async def test_load_failure_reports_runtime_error_with_retry_after(env: Any) -> None:
    engine, factory = env
    factory.fail["b"] = LoadFailed("E rkllm: invalid model file")
    with pytest.raises(LoadFailed, match="invalid model file") as info:
        await collect(engine, req("b"))
    assert info.value.retry_after == 10
    assert engine.status().cooldowns[0].model == "b"


async def test_model_larger_than_budget_is_rejected(env: Any) -> None:
    engine, _ = env
    with pytest.raises(InsufficientMemory, match="huge needs"):
        await engine.load("huge")


async def test_loaded_model_serves_while_another_loads(env: Any) -> None:
    engine, factory = env
    await engine.load("cpu")
    factory.load_gate = asyncio.Event()
    loading = asyncio.ensure_future(engine.load("b"))
    events = await collect(engine, req("cpu"))
    assert isinstance(events[-1], Done) and not loading.done()
    factory.load_gate.set()
    await loading


async def test_unload_status_and_learned_footprint(env: Any, tmp_path: Path) -> None:
    engine, _ = env
    await collect(engine, req())
    sup = engine._sup
    await sup.until(lambda: not sup.scheduler.running)  # Done is yielded before the lane is released
    [loaded] = engine.status().loaded
    assert loaded.name == "a" and loaded.domains == (0,) and loaded.expires_at is not None
    await engine.unload("a")
    assert engine.status().loaded == ()
    figures = json.loads((tmp_path / "footprints.json").read_text())["figures"]
    # the fake runner's peak; no probe confirmed that its figures include NPU buffers
    assert list(figures.values()) == [{"bytes": 320 * 1024 * 1024, "covers_npu": False}]


async def test_lease_keeps_model_until_closed(env: Any) -> None:
    engine, _ = env
    lease = await engine.open_lease("a")
    assert engine.status().loaded[0].leases == 1 and engine.status().loaded[0].expires_at is None
    events = await collect(engine, req(lease=lease))
    assert isinstance(events[-1], Done)
    await engine.close_lease(lease)
    await engine._sup.until(lambda: engine.status().loaded[0].leases == 0)


async def test_stop_aborts_running_generation_after_grace(tmp_path: Path) -> None:
    factory = FakeFactory()
    engine = ModelEngine(Settings(memory_budget=16 * GiB, state_dir=tmp_path), FakeRegistry(spec("a")),  # type: ignore[arg-type]
                         factory, mem_probe=lambda: None)
    await engine.start()
    await engine.load("a")
    factory.last("a").gate = asyncio.Event()
    task = asyncio.ensure_future(collect(engine, req()))
    await engine._sup.until(lambda: bool(engine._sup.scheduler.running))
    await engine.stop(grace=0)
    with pytest.raises(ShuttingDown):
        await task
    with pytest.raises(ShuttingDown):
        await collect(engine, req())
