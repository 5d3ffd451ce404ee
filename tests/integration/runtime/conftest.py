"""Fixtures for the rkllm binding against every simulator flavour."""

from __future__ import annotations

import ctypes
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import simkit
from rkio.runtime.base import LoadParams, Token
from rkio.runtime.rkllm import RkllmRuntime

FLAVOURS = ("1.1.4", "1.2.0", "1.2.1", "1.2.3", "1.3.0")
ABI_OF = {"1.1.4": "1.1", "1.2.0": "1.2.0", "1.2.1": "1.2.1", "1.2.3": "1.2.1", "1.3.0": "1.3.0"}
SIM_ENV = ("RKLLM_SIM_FAULT", "RKLLM_SIM_OVERCOMMIT", "RKLLM_SIM_TOKEN_US", "RKLLM_SIM_PREFILL_US",
           "RKLLM_SIM_INIT_MS", "RKLLM_SIM_RAM", "RKIO_RKLLM_LIB", "RKIO_RKLLM_ABI")


class Sim:
    """The simulator's introspection symbols (not part of any real runtime, so not in product code)."""

    def __init__(self, library: Path) -> None:
        self._cdll = ctypes.CDLL(str(library))
        for name in ("rkllm_sim_last_init", "rkllm_sim_last_run", "rkllm_sim_handle"):
            function = getattr(self._cdll, name)
            function.argtypes = [ctypes.c_void_p]
            function.restype = ctypes.c_char_p

    def _json(self, name: str, runtime: RkllmRuntime) -> dict[str, Any]:
        raw = getattr(self._cdll, name)(runtime.handle)
        assert raw is not None, f"{name} returned NULL"
        result: dict[str, Any] = json.loads(raw)
        return result

    def last_init(self, runtime: RkllmRuntime) -> dict[str, Any]:
        return self._json("rkllm_sim_last_init", runtime)

    def last_run(self, runtime: RkllmRuntime) -> dict[str, Any]:
        return self._json("rkllm_sim_last_run", runtime)

    def handle(self, runtime: RkllmRuntime) -> dict[str, Any]:
        return self._json("rkllm_sim_handle", runtime)


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


def collect(tokens: list[Token]) -> Callable[[Token], bool]:
    def sink(token: Token) -> bool:
        tokens.append(token)
        return True

    return sink
