"""The user's memory experiments through the engine on the simulator.

The simulator punishes any overcommit of RAM or of an IOMMU domain (``oom``: the largest process is
killed; ``garbage``: every affected model answers ``&&&&``) and records it, so each experiment ends by
checking that nothing was overcommitted and the model loaded first still answers exactly.
"""

from __future__ import annotations

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
    settle,
)

import simkit
from rkio.errors import InsufficientMemory

pytestmark = [pytest.mark.timeout(120), pytest.mark.parametrize("overcommit", ["oom", "garbage"])]

GiB, MiB = simkit.GiB, simkit.MiB
LARGE = "[[n=6]] large model answers"
SMALL = "[[n=5]] small model answers"


def pid_of(engine, name: str) -> int | None:
    return next((m.pid for m in engine.status().loaded if m.name == name), None)


async def test_large_then_small_then_large(engines: EngineFactory, models: SimModels, sim, monkeypatch,
                                           overcommit: str) -> None:
    """3 GiB + 1.5 GiB: together they overflow one 4 GiB domain, so the small one must go elsewhere."""
    configure_sim(sim, monkeypatch, ram=8 * GiB, overcommit=overcommit)
    models.add("large", 3 * GiB)
    models.add("small", 1536 * MiB)
    engine = await engines()
    assert_reply(await collect(engine, "large", LARGE), LARGE, 6)
    large_pid = pid_of(engine, "large")
    assert_reply(await collect(engine, "small", SMALL), SMALL, 5)
    assert_reply(await collect(engine, "large", LARGE), LARGE, 6)
    await settle(engine, quiet)
    status = engine.status()
    assert pid_of(engine, "large") == large_pid, "the large model was reloaded"
    placed = {m.name: set(m.domains) for m in status.loaded}
    # the large model's estimate (never lowered without a probe's confirmation) spans two windows
    assert min(placed["large"]) not in placed["small"]
    assert status.counters["evictions"] == 0
    check_memory_truth(engine, sim)


async def test_small_and_small_share_memory(engines: EngineFactory, models: SimModels, sim, monkeypatch,
                                            overcommit: str) -> None:
    configure_sim(sim, monkeypatch, ram=4 * GiB, overcommit=overcommit)
    models.add("s1", 512 * MiB)
    models.add("s2", 512 * MiB)
    engine = await engines()
    assert_reply(await collect(engine, "s1", SMALL), SMALL, 5)
    first = pid_of(engine, "s1")
    assert_reply(await collect(engine, "s2", LARGE), LARGE, 6)
    assert_reply(await collect(engine, "s1", SMALL), SMALL, 5)
    await settle(engine, quiet)
    assert pid_of(engine, "s1") == first
    assert {m.name for m in engine.status().loaded} == {"s1", "s2"}
    check_memory_truth(engine, sim)


async def test_second_model_that_does_not_fit_evicts_the_idle_one(
        engines: EngineFactory, models: SimModels, sim, monkeypatch, overcommit: str) -> None:
    """Budget = sim RAM = 5 GiB: 3 GiB and 1.5 GiB models cannot both be resident (3.4 + 1.9 GiB)."""
    configure_sim(sim, monkeypatch, ram=5 * GiB, overcommit=overcommit)
    models.add("large", 3 * GiB)
    models.add("small", 1536 * MiB)
    engine = await engines()
    assert_reply(await collect(engine, "large", LARGE), LARGE, 6)
    assert_reply(await collect(engine, "small", SMALL), SMALL, 5)
    await settle(engine, quiet)
    assert [m.name for m in engine.status().loaded] == ["small"]
    check_memory_truth(engine, sim)
    assert_reply(await collect(engine, "large", LARGE), LARGE, 6)
    await settle(engine, quiet)
    status = engine.status()
    assert [m.name for m in status.loaded] == ["large"]
    assert status.counters["evictions"] == 2
    check_memory_truth(engine, sim)


async def test_model_beyond_a_domain_goes_to_free_domains(engines: EngineFactory, models: SimModels, sim,
                                                           monkeypatch, overcommit: str) -> None:
    """A 3.5 GiB model next to a 3 GiB one: each needs most of a 4 GiB window, none may share one."""
    configure_sim(sim, monkeypatch, ram=12 * GiB, overcommit=overcommit)
    models.add("a", 3584 * MiB)
    models.add("b", 3 * GiB)
    models.add("c", 2 * GiB)
    engine = await engines()
    for name in ("a", "b", "c", "a"):
        assert_reply(await collect(engine, name, LARGE), LARGE, 6)
    await settle(engine, quiet)
    status = engine.status()
    assert {m.name for m in status.loaded} == {"a", "b", "c"}
    assert status.counters["evictions"] == 0
    state = check_memory_truth(engine, sim)
    assert len({r["base_domain"] for r in state["reservations"]}) == 3


async def test_model_bigger_than_the_budget_is_rejected_cleanly(
        engines: EngineFactory, models: SimModels, sim, monkeypatch, overcommit: str) -> None:
    configure_sim(sim, monkeypatch, ram=8 * GiB, overcommit=overcommit)
    models.add("small", 1 * GiB)
    models.add("huge", 9 * GiB)
    engine = await engines()
    assert_reply(await collect(engine, "small", SMALL), SMALL, 5)
    await settle(engine, quiet)
    before = (pid_of(engine, "small"), engine.status().counters["loads"], child_pids())
    reply = await collect(engine, "huge", LARGE)
    assert isinstance(reply.error, InsufficientMemory), reply.error
    assert "huge needs" in reply.error.message and "whole memory budget" in reply.error.message
    assert reply.text == ""
    await settle(engine, quiet)
    assert (pid_of(engine, "small"), engine.status().counters["loads"], child_pids()) == before
    assert [m.name for m in engine.status().loaded] == ["small"]
    assert_reply(await collect(engine, "small", SMALL), SMALL, 5)
    check_memory_truth(engine, sim)


async def test_a_model_loaded_but_never_used_is_not_under_accounted_next_time(
        engines: EngineFactory, models: SimModels, sim, monkeypatch, overcommit: str) -> None:
    """Load, unload, load again, then ask for a second model: the first load's figure (the runner's RSS,
    no KV cache or buffers yet) must not become the 'learned' footprint of the second load."""
    configure_sim(sim, monkeypatch, ram=5 * GiB, overcommit=overcommit)
    models.add("large", 3 * GiB)
    models.add("small", 1536 * MiB)
    engine = await engines()
    await engine.load("large")
    await engine.unload("large")
    await engine.load("large")
    await settle(engine, quiet)
    (held,) = sim.read_state()["reservations"]
    assert engine.status().loaded[0].bytes >= held["bytes"]
    assert_reply(await collect(engine, "small", SMALL), SMALL, 5)  # large must be evicted for it
    assert_reply(await collect(engine, "large", LARGE), LARGE, 6)
    await settle(engine, quiet)
    assert engine.status().counters["evictions"] == 2
    check_memory_truth(engine, sim)
