"""Runner processes on the simulator: sparse sim models in a models dir, and the env pointing at the sim."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

import simkit
from rkio.engine.registry import ModelRegistry
from rkio.engine.runner import RunnerProcess
from rkio.engine.types import ModelSpec
from rkio.runtime.base import LoadParams
from rkio.runtime.rkllm import RkllmRuntime
from simkit.introspect import Sim
from unit.runner import runner_fakes
from unit.runner.runner_fakes import Peer

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


@pytest.fixture(params=simkit.FLAVOURS)
def served(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Peer, RkllmRuntime, Sim]]:
    """A RunnerService in this process (on a thread, real frames) with an RkllmRuntime on each simulator
    flavour, so the simulator's per-handle introspection can be read."""
    for name in ("RKLLM_SIM_FAULT", "RKLLM_SIM_TOKEN_US", "RKIO_RKLLM_ABI", "RKIO_RKLLM_LIB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RKLLM_SIM_STATE", str(tmp_path / "sim-state"))
    library = simkit.sim_library(str(request.param))
    model = simkit.make_model(tmp_path / "m.rkllm", 1 << 20, token_us=200)
    runtime = RkllmRuntime(str(library))
    peer = Peer(runtime)  # type: ignore[arg-type]
    load = LoadParams(str(model), max_context_len=2048, max_new_tokens=512)
    spec = runner_fakes.make_spec(path=str(model), load=load)
    peer.load(spec)
    yield peer, runtime, Sim(library)
    peer.sock.close()
    peer.thread.join(10)


