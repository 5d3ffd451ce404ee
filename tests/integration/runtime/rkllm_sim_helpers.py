"""Simulator introspection and small helpers shared by the rkllm integration tests."""

from __future__ import annotations

import ctypes
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rkio.runtime.base import Token
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


def collect(tokens: list[Token]) -> Callable[[Token], bool]:
    def sink(token: Token) -> bool:
        tokens.append(token)
        return True

    return sink
