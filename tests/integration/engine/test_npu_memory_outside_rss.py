"""Admission when a runner's own figures miss its NPU buffers (the simulator's ``dma`` mode).

On a board the NPU buffers are shmem pages the runner need not map, so VmRSS, VmHWM and the runtime's
VmHWM-based ``memory_usage_mb`` can all leave them out (docs/simulator.md "NPU buffers and RSS"). The
simulator's ``dma`` mode does exactly that, and really takes the memory from the host. If the engine
trusted those figures, it would count each model here at its file size (128 MiB) or its runner's RSS while
the simulator holds 162 MiB, and the sixth or seventh model would overcommit the 1000 MiB machine.
"""

from __future__ import annotations

import pytest
from engine_sim import (
    EngineFactory,
    SimModels,
    assert_reply,
    check_memory_truth,
    collect,
    configure_sim,
    quiet,
    settle,
    start_engine,
)

import simkit
from rkio.engine.planner import estimate_footprint

pytestmark = pytest.mark.timeout(180)

MiB = simkit.MiB
FILE = 128 * MiB
CTX = 512
HEADER = {"buffer_bytes": 32 * MiB, "kv_bytes_per_token": 4096}
HELD = simkit.footprint(FILE, CTX, kv_bytes_per_token=4096, buffer_bytes=32 * MiB)  # 162 MiB
RAM = 1000 * MiB  # the simulated machine and the engine's budget: 6 x 162 MiB fit, 7 do not
NAMES = tuple(f"m{i}" for i in range(7))
PROMPT = "[[n=4]] tell me about memory"


@pytest.fixture(params=["1.2.3", "1.1.4"])
def flavour(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """1.2.3 reports memory_usage_mb (here the runner's VmHWM), 1.1.4 reports no figure of its own."""
    flavour: str = request.param
    monkeypatch.setenv("RKIO_RKLLM_LIB", str(simkit.sim_library(flavour)))
    monkeypatch.setenv("RKIO_RKLLM_ABI", flavour)
    return flavour


def add_models(models: SimModels) -> None:
    for name in NAMES:
        models.add(name, FILE, toml=f"max_context_len = {CTX}\n", **HEADER)


async def test_rss_blind_to_npu_buffers_never_overcommits(engines: EngineFactory, models: SimModels, sim,
                                                          monkeypatch, tmp_path, flavour: str) -> None:
    configure_sim(sim, monkeypatch, ram=RAM, overcommit="oom", npu_memory="dma")
    add_models(models)
    engine = await engines()
    for round_ in range(2):  # the second round loads every model again, after each one was learned
        for name in NAMES:
            assert_reply(await collect(engine, name, PROMPT), PROMPT, 4)
            await settle(engine, quiet)
            check_memory_truth(engine, sim)
        for m in engine.status().loaded:  # no rkllm figure below the estimate without a confirmation
            assert m.bytes >= estimate_footprint(FILE, CTX), (round_, m)
    for name in NAMES[:3]:  # unload and reload: the stored figures are used now
        await engine.unload(name)
        assert_reply(await collect(engine, name, PROMPT), PROMPT, 4)
        await settle(engine, quiet)
        check_memory_truth(engine, sim)
    assert engine.status().counters["evictions"] >= len(NAMES)


async def test_a_restarted_engine_does_not_trust_what_it_stored(models: SimModels, sim, monkeypatch, tmp_path,
                                                                flavour: str) -> None:
    """The footprints a first engine stored are read by the next one: they must not let it overcommit."""
    configure_sim(sim, monkeypatch, ram=RAM, overcommit="oom", npu_memory="dma")
    add_models(models)
    for _ in range(2):
        engine = await start_engine(models.root, tmp_path / "state", sim)
        try:
            for name in NAMES:
                assert_reply(await collect(engine, name, PROMPT), PROMPT, 4)
            await settle(engine, quiet)
            check_memory_truth(engine, sim)
        finally:
            await engine.stop(grace=1.0)
    assert sim.read_state()["overcommits"] == 0
