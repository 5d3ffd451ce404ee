"""Runner processes on the simulator: sparse sim models in a models dir, and the env pointing at the sim."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import simkit
from rkio.engine.registry import ModelRegistry
from rkio.engine.runner import RunnerProcess
from rkio.engine.types import ModelSpec

FLAVOUR = "1.2.3"


@pytest.fixture(scope="session")
def sim_lib() -> Path:
    return simkit.sim_library(FLAVOUR)


@pytest.fixture
def sim_env(sim_lib: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "RKIO_RKLLM_LIB": str(sim_lib),
        "RKIO_RKLLM_ABI": FLAVOUR,
        "RKLLM_SIM_STATE": str(tmp_path / "sim-state"),
        "RKLLM_SIM_TOKEN_US": "0",
        "RKLLM_SIM_PREFILL_US": "0",
        "RKLLM_SIM_INIT_MS": "0",
    }


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[..., ModelSpec]:
    """A sparse sim model in a fresh models dir, resolved through the registry like the server does."""
    models = tmp_path / "models"

    def make(name: str = "sim-0.5b", size: int = 64 << 20, **header: object) -> ModelSpec:
        simkit.make_model(models / name / f"{name}.rkllm", size, **header)
        return ModelRegistry(models).get(name)

    return make


@pytest.fixture
async def runners() -> AsyncIterator[list[RunnerProcess]]:
    """Runners a test starts are killed and reaped afterwards, whatever happened."""
    started: list[RunnerProcess] = []
    yield started
    for runner in started:
        runner.kill()
        await runner.wait()
