"""Fixtures for the rkllm binding against every simulator flavour."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rkllm_sim_helpers import FLAVOURS, SIM_ENV

import simkit
from rkio.runtime.base import LoadParams
from rkio.runtime.rkllm import RkllmRuntime
from simkit.introspect import Sim


@pytest.fixture(params=FLAVOURS)
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sim_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private simulator state file and no inherited simulator knobs."""
    for name in SIM_ENV:
        monkeypatch.delenv(name, raising=False)
    state = tmp_path / "sim-state"
    monkeypatch.setenv("RKLLM_SIM_STATE", str(state))
    return state


@pytest.fixture
def library(flavour: str, sim_env: Path) -> Path:
    return Path(simkit.sim_library(flavour))


@pytest.fixture
def sim(library: Path) -> Sim:
    return Sim(library)


@pytest.fixture
def model(tmp_path: Path) -> Callable[..., Path]:
    """``model(**header)``: a small sparse model file with the given RKSIM header."""
    counter = iter(range(1000))

    def make(**header: Any) -> Path:
        header.setdefault("max_context_limit", 4096)
        return Path(simkit.make_model(tmp_path / f"model{next(counter)}.rkllm", 1 << 20, **header))

    return make


@pytest.fixture
def runtime(library: Path) -> Iterator[RkllmRuntime]:
    rt = RkllmRuntime(str(library))
    yield rt
    rt.destroy()


@pytest.fixture
def loaded(runtime: RkllmRuntime, model: Callable[..., Path]) -> RkllmRuntime:
    runtime.load(LoadParams(model_path=str(model()), max_context_len=1024, max_new_tokens=64))
    return runtime
