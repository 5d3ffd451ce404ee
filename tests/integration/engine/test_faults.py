"""Every simulator fault through the engine: the engine survives, the affected request fails with the
cause, other models keep answering, memory accounting returns to the truth, and the next request either
recovers or meets the cooldown / quarantine (each test asserts which)."""

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
    oracle,
    quiet,
    settle,
)

import simkit
from rkio.engine.engine import ModelEngine
from rkio.errors import GenerationTimeout, LoadFailed, ModelQuarantined, RunnerCrashed

pytestmark = pytest.mark.timeout(120)

GiB, MiB = simkit.GiB, simkit.MiB
OK = "[[n=5]] the healthy model"
BAD = "[[n=8]] the faulty model speaks"


async def healthy_engine(engines: EngineFactory, models: SimModels, **settings: object) -> ModelEngine:
    """An engine with model ``ok`` loaded and answering."""
    models.add("ok", 64 << 20)
    engine = await engines(**settings)
    assert_reply(await collect(engine, "ok", OK), OK, 5)
    return engine


def gone(name: str):
    return lambda status: quiet(status) and name not in {m.name for m in status.loaded}


async def still_fine(engine: ModelEngine, sim: simkit.SimEnv, ok_pid: int | None,
                     overcommits: int = 0) -> None:
    """The other model answers from the same runner and the engine's memory view is the simulator's."""
    assert_reply(await collect(engine, "ok", OK), OK, 5)
    await settle(engine, quiet)
    assert next(m.pid for m in engine.status().loaded if m.name == "ok") == ok_pid
    check_memory_truth(engine, sim, overcommits)


def ok_pid(engine: ModelEngine) -> int | None:
    return next(m.pid for m in engine.status().loaded if m.name == "ok")


async def test_init_failure_reports_the_runtime_error_and_cools_down(engines: EngineFactory,
                                                                    models: SimModels, sim) -> None:
    engine = await healthy_engine(engines, models)
    models.add("bad", 64 << 20, fault="init_fail")
    reply = await collect(engine, "bad", BAD)
    assert isinstance(reply.error, LoadFailed), reply.error
    assert "E rkllm: Load model failed! (simulated fault init_fail)" in reply.error.message
    assert reply.error.retry_after == pytest.approx(10.0)
    await settle(engine, gone("bad"))
    runners = child_pids()
    # within the cooldown the next request fails at once, without starting another runner
    again = await collect(engine, "bad", BAD)
    assert isinstance(again.error, LoadFailed) and again.error.retry_after is not None
    assert 0 < again.error.retry_after <= 10.0
    assert "Load model failed" in again.error.message
    status = engine.status()
    assert (status.counters["load_failures"], status.counters["crashes"]) == (1, 0)
    assert [c.model for c in status.cooldowns] == ["bad"]
    assert child_pids() == runners
    await still_fine(engine, sim, ok_pid(engine))


async def test_segfault_during_init_is_a_load_failure_naming_the_signal(engines: EngineFactory,
                                                                       models: SimModels, sim) -> None:
    engine = await healthy_engine(engines, models)
    models.add("bad", 64 << 20, fault="init_segv")
    reply = await collect(engine, "bad", BAD)
    assert isinstance(reply.error, LoadFailed), reply.error
    assert "runner for bad crashed with SIGSEGV during load" in reply.error.message
    assert reply.error.retry_after == pytest.approx(10.0)
    await settle(engine, gone("bad"))
    status = engine.status()
    assert (status.counters["load_failures"], status.counters["crashes"]) == (1, 1)
    again = await collect(engine, "bad", BAD)
    assert isinstance(again.error, LoadFailed) and "SIGSEGV" in again.error.message  # cooldown
    await still_fine(engine, sim, ok_pid(engine))


@pytest.mark.parametrize(("fault", "cause"), [
    ("segv_at_token:3", "runner for bad crashed with SIGSEGV during generation"),
    ("exit_at_token:3", "runner for bad exited with status 3 during generation"),
])
async def test_crash_mid_generation_then_the_next_request_reloads(
        engines: EngineFactory, models: SimModels, sim, monkeypatch, fault: str, cause: str) -> None:
    engine = await healthy_engine(engines, models)
    models.add("bad", 64 << 20)
    monkeypatch.setenv("RKLLM_SIM_FAULT", fault)  # only the runner started now gets the fault
    reply = await collect(engine, "bad", BAD)
    monkeypatch.delenv("RKLLM_SIM_FAULT")
    assert isinstance(reply.error, RunnerCrashed), reply.error
    assert cause in reply.error.message
    assert oracle(BAD, 3)[0].startswith(reply.text)  # whatever arrived was the right text
    await settle(engine, gone("bad"))
    assert engine.status().counters["crashes"] == 1
    await still_fine(engine, sim, ok_pid(engine))
    assert_reply(await collect(engine, "bad", BAD), BAD, 8)  # no cooldown after a crash: it reloads
    assert engine.status().counters["loads"] == 3


async def test_repeated_crashes_quarantine_the_model(engines: EngineFactory, models: SimModels, sim) -> None:
    engine = await healthy_engine(engines, models)
    models.add("bad", 64 << 20, fault="segv_at_token:2")
    for _ in range(3):
        reply = await collect(engine, "bad", BAD)
        assert isinstance(reply.error, RunnerCrashed), reply.error
        await settle(engine, gone("bad"))
    loads = engine.status().counters["loads"]
    reply = await collect(engine, "bad", BAD)
    assert isinstance(reply.error, ModelQuarantined), reply.error
    assert "SIGSEGV" in reply.error.message
    status = engine.status()
    assert status.quarantined == ("bad",)
    assert (status.counters["loads"], status.counters["crashes"]) == (loads, 3)
    await still_fine(engine, sim, ok_pid(engine))


async def test_hung_runtime_times_out_and_its_runner_is_killed(engines: EngineFactory, models: SimModels,
                                                              sim, monkeypatch) -> None:
    # the deadlines apply to the healthy model too: long enough for a loaded machine, short for the hang
    engine = await healthy_engine(engines, models, token_stall_timeout=3.0, first_token_timeout=3.0,
                                  abort_grace=0.5)
    models.add("bad", 64 << 20)
    monkeypatch.setenv("RKLLM_SIM_FAULT", "hang_at_token:2")
    reply = await collect(engine, "bad", BAD)
    monkeypatch.delenv("RKLLM_SIM_FAULT")
    assert isinstance(reply.error, GenerationTimeout), reply.error
    assert "bad produced no token within the deadline" in reply.error.message
    # every token before the hang reaches the client, even one the runner held back for a busy gateway
    assert reply.text == oracle(BAD, 2)[0]
    await settle(engine, gone("bad"))
    status = engine.status()
    # rkio killed it itself (the abort never returned): a kill, not a crash towards quarantine
    assert (status.counters["stalls"], status.counters["kills"], status.counters["crashes"]) == (1, 1, 0)
    await still_fine(engine, sim, ok_pid(engine))
    assert_reply(await collect(engine, "bad", BAD), BAD, 8)


async def test_sim_oom_kill_of_the_loading_runner(engines: EngineFactory, models: SimModels, sim,
                                                   monkeypatch) -> None:
    """A budget the hardware cannot honour (16 GiB vs 2 GiB): the sim's kernel kills the loader."""
    configure_sim(sim, monkeypatch, ram=2 * GiB, overcommit="oom")
    engine = await healthy_engine(engines, models, memory_budget=16 * GiB)
    models.add("big", 1536 * MiB)
    reply = await collect(engine, "big", BAD)
    assert isinstance(reply.error, LoadFailed), reply.error
    assert "runner for big crashed with SIGKILL during load" in reply.error.message
    assert reply.error.retry_after == pytest.approx(10.0)
    await settle(engine, gone("big"))
    assert len(sim.read_state()["oom_kills"]) == 1
    await still_fine(engine, sim, ok_pid(engine), overcommits=1)


async def test_sim_oom_kill_of_an_idle_runner(engines: EngineFactory, models: SimModels, sim,
                                               monkeypatch) -> None:
    """The sim's kernel kills the largest process, here the idle resident: the engine notices at once."""
    configure_sim(sim, monkeypatch, ram=2 * GiB, overcommit="oom")
    models.add("big", 1536 * MiB)
    engine = await engines(memory_budget=16 * GiB)
    assert_reply(await collect(engine, "big", BAD), BAD, 8)
    models.add("ok", 64 << 20)
    assert_reply(await collect(engine, "ok", OK), OK, 5)
    await settle(engine, gone("big"))
    status = engine.status()
    assert [m.name for m in status.loaded] == ["ok"]
    assert status.counters["crashes"] == 1
    await still_fine(engine, sim, ok_pid(engine), overcommits=1)
