"""Lifecycle through the engine with real runners: cancellation frees the lane, keep-alive, pinning, and
learned footprints feeding the next admission decision."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from engine_sim import (
    EngineFactory,
    SimModels,
    assert_reply,
    check_memory_truth,
    child_pids,
    collect,
    configure_sim,
    quiet,
    request,
    settle,
    start_engine,
)

import simkit
from rkio.engine.engine import ModelEngine
from rkio.engine.footprints import FILE_NAME, FootprintStore
from rkio.engine.planner import estimate_footprint
from rkio.engine.registry import ModelRegistry
from rkio.engine.types import TokenChunk
from rkio.errors import InsufficientMemory

pytestmark = pytest.mark.timeout(120)

GiB, MiB = simkit.GiB, simkit.MiB
PROMPT = "[[n=5]] short answer"
TOKEN_US = 20_000  # the slow model: 20 ms per token, so [[n=5000]] would take 100 s


def loaded(engine: ModelEngine) -> dict[str, int | None]:
    return {m.name: m.pid for m in engine.status().loaded}


async def first_token(engine: ModelEngine, model: str, prompt: str) -> float:
    """Read a reply to its end; returns when (loop time) its first token arrived."""
    loop = asyncio.get_running_loop()
    at: float | None = None
    async for event in engine.generate(request(model, prompt)):
        if isinstance(event, TokenChunk) and at is None:
            at = loop.time()
    assert at is not None
    return at


@pytest.mark.parametrize("next_model", ["slow", "fast"])
async def test_cancelling_a_stream_hands_the_lane_to_the_next_request(
        engines: EngineFactory, models: SimModels, sim, next_model: str) -> None:
    models.add("slow", 64 << 20, token_us=TOKEN_US)
    models.add("fast", 64 << 20)
    engine = await engines(npu_lanes=1)
    assert_reply(await collect(engine, "fast", PROMPT), PROMPT, 5)  # both loaded before timing
    assert_reply(await collect(engine, "slow", PROMPT), PROMPT, 5)
    loop = asyncio.get_running_loop()
    # 5000 tokens at 20 ms: only an abort that works lets the next request in within the test's timeout
    stream = engine.generate(request("slow", "[[n=5000]] a very long answer"))
    async for event in stream:
        if isinstance(event, TokenChunk):
            break
    # the next request queues for the (only) lane while the long generation runs
    waiting = asyncio.create_task(first_token(engine, next_model, "[[n=3]] next in line"))
    await settle(engine, lambda s: s.queue_length == 1)
    cancelled_at = loop.time()
    await stream.aclose()
    assert await waiting > cancelled_at  # the next request ran only after the cancel...
    await settle(engine, quiet)
    counters = engine.status().counters
    assert (counters["cancelled"], counters["crashes"], counters["loads"]) == (1, 0, 2)
    check_memory_truth(engine, sim)


async def test_keep_alive_zero_unloads_after_the_request(engines: EngineFactory, models: SimModels,
                                                         sim) -> None:
    models.add("m", 64 << 20)
    engine = await engines()
    assert_reply(await collect(engine, "m", PROMPT, keep_alive=0), PROMPT, 5)
    await settle(engine, lambda s: not s.loaded)
    assert engine.status().counters["expirations"] == 1
    assert sim.read_state()["reservations"] == []
    check_memory_truth(engine, sim)


async def test_keep_alive_expiry_unloads_an_idle_model(engines: EngineFactory, models: SimModels,
                                                       sim) -> None:
    models.add("m", 64 << 20)
    engine = await engines(keep_alive=0.4)
    loop = asyncio.get_running_loop()
    assert_reply(await collect(engine, "m", PROMPT), PROMPT, 5)
    finished = loop.time()
    await settle(engine, quiet)
    (entry,) = engine.status().loaded
    assert entry.expires_at is not None and entry.expires_at - time.time() <= 0.4
    await settle(engine, lambda s: not s.loaded)
    assert loop.time() - finished >= 0.35  # timer granularity
    assert engine.status().counters["expirations"] == 1
    check_memory_truth(engine, sim)
    assert_reply(await collect(engine, "m", PROMPT, keep_alive=-1), PROMPT, 5)  # reloads, then stays
    await settle(engine, quiet)
    (entry,) = engine.status().loaded
    assert entry.expires_at is None


async def test_pinned_model_is_never_expired_or_evicted(engines: EngineFactory, models: SimModels, sim,
                                                        monkeypatch) -> None:
    configure_sim(sim, monkeypatch, ram=4 * GiB)
    models.add("pinned", 2 * GiB, toml="pinned = true\n")
    models.add("small", 256 * MiB)
    models.add("other", 1 * GiB)
    engine = await engines(keep_alive=0.3)
    await settle(engine, lambda s: quiet(s) and [m.name for m in s.loaded] == ["pinned"])  # preloaded
    pinned_pid = loaded(engine)["pinned"]
    assert_reply(await collect(engine, "small", PROMPT), PROMPT, 5)
    await settle(engine, lambda s: "small" not in {m.name for m in s.loaded})  # small expires...
    assert loaded(engine) == {"pinned": pinned_pid}  # ...the pinned one does not
    reply = await collect(engine, "other", PROMPT)  # fits only if the pinned model went away
    assert isinstance(reply.error, InsufficientMemory), reply.error
    assert "pinned" in reply.error.message and "cannot be evicted" in reply.error.message
    assert_reply(await collect(engine, "pinned", PROMPT), PROMPT, 5)
    await settle(engine, quiet)
    assert loaded(engine) == {"pinned": pinned_pid}
    assert engine.status().counters["evictions"] == 0
    check_memory_truth(engine, sim)


async def test_learned_footprints_admit_what_estimates_would_not(models: SimModels, sim, monkeypatch,
                                                                 tmp_path) -> None:
    """Two 1 GiB models in a 3 GiB budget: by the estimate (1.7 GiB each) they need an eviction; by the
    learned figure (1.36 GiB each, what the sim reserves) they fit together after a restart. The figure
    counts because a probe confirmed that the runtime's memory_usage_mb includes the NPU buffers (it does
    in the simulator's default mode)."""
    configure_sim(sim, monkeypatch, ram=3 * GiB)
    models.add("a", 1 * GiB)
    models.add("b", 1 * GiB)
    estimate = estimate_footprint(1 * GiB, 4096)
    state_dir = tmp_path / "state"
    store = FootprintStore(state_dir)
    for name in ("a", "b"):
        store.confirm(ModelRegistry(models.root).get(name), ["runtime"])
    before = child_pids()

    first = await start_engine(models.root, state_dir, sim)
    try:
        await first.load("a")
        assert first.status().loaded[0].bytes == estimate  # nothing measured yet
        assert_reply(await collect(first, "a", PROMPT), PROMPT, 5)
        await settle(first, quiet)
        # an NPU model's figure counts from its next load on; this incarnation keeps the estimate
        assert first.status().loaded[0].bytes == estimate
        assert_reply(await collect(first, "b", PROMPT), PROMPT, 5)  # b's estimate + a: over budget
        await settle(first, quiet)
        assert [m.name for m in first.status().loaded] == ["b"]
        assert first.status().counters["evictions"] == 1
        check_memory_truth(first, sim)
    finally:
        await first.stop(grace=1.0)
    figures = json.loads((state_dir / FILE_NAME).read_text())["figures"]
    learned = {k.split("|")[1].rsplit("/", 1)[1]: f["bytes"] for k, f in figures.items() if f["covers_npu"]}
    assert sorted(learned) == ["a.rkllm", "b.rkllm"]
    held = simkit.footprint(1 * GiB, 4096)
    # the runtime's figure (the MemAvailable drop is host noise here: the default mode allocates nothing)
    assert all(held <= figure < estimate for figure in learned.values()), learned

    second = await start_engine(models.root, state_dir, sim)
    try:
        await second.load("a")
        assert second.status().loaded[0].bytes == learned["a.rkllm"]  # stored, before any generation
        await second.load("b")
        await settle(second, quiet)
        assert {m.name for m in second.status().loaded} == {"a", "b"}
        assert second.status().counters["evictions"] == 0
        for name in ("a", "b"):
            assert_reply(await collect(second, name, PROMPT), PROMPT, 5)
        check_memory_truth(second, sim)
    finally:
        await second.stop(grace=1.0)
    assert child_pids() == before
