"""The whole engine with real runner processes on the simulator: sparse models, a private sim state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from engine_sim import EngineFactory, SimModels, child_pids, start_engine

import simkit
from rkio.engine.engine import ModelEngine

FLAVOUR = "1.2.3"
SIM_RAM = 8 * simkit.GiB


@pytest.fixture(scope="session")
def sim_lib() -> Path:
    return simkit.sim_library(FLAVOUR)


@pytest.fixture
def sim(sim_lib: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> simkit.SimEnv:
    """The simulator's variables in this process's environment (runner processes inherit it); any
    overcommit kills the largest process, so a planner mistake cannot go unnoticed."""
    env = simkit.SimEnv.fresh(tmp_path, ram_bytes=SIM_RAM, overcommit="oom", token_us=0, prefill_us=0,
                              init_ms=0)
    monkeypatch.setenv("RKIO_RKLLM_LIB", str(sim_lib))
    monkeypatch.setenv("RKIO_RKLLM_ABI", FLAVOUR)
    monkeypatch.delenv("RKLLM_SIM_FAULT", raising=False)
    for key, value in env.env({}).items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def models(tmp_path: Path) -> SimModels:
    return SimModels(tmp_path / "models")


@pytest.fixture
async def engines(sim: simkit.SimEnv, models: SimModels, tmp_path: Path) -> AsyncIterator[EngineFactory]:
    """``await engines(**settings)`` starts a ModelEngine on ``models``; afterwards every engine is
    stopped and no runner process may be left (alive or unreaped)."""
    before = child_pids()
    started: list[ModelEngine] = []

    async def make(**overrides: Any) -> ModelEngine:
        engine = await start_engine(models.root, tmp_path / "state", sim, **overrides)
        started.append(engine)
        return engine

    yield make
    for engine in started:
        await engine.stop(grace=1.0)
    assert child_pids() - before == set(), "runner processes outlived engine.stop()"
