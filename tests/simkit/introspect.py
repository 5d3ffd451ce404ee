"""The simulator's introspection symbols (``rkllm_sim_*``, docs/simulator.md), read from the test process.

They exist only in the simulated librkllmrt, so only tests call them, never product code. Each takes a
live handle of this process (``RkllmRuntime.handle``) and returns JSON.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from typing import Any, Protocol


class HasHandle(Protocol):
    @property
    def handle(self) -> int | None: ...


class Sim:
    """One simulator library's introspection symbols."""

    def __init__(self, library: Path) -> None:
        self._cdll = ctypes.CDLL(str(library))
        for name in ("rkllm_sim_last_init", "rkllm_sim_last_run", "rkllm_sim_handle"):
            function = getattr(self._cdll, name)
            function.argtypes = [ctypes.c_void_p]
            function.restype = ctypes.c_char_p

    def _json(self, name: str, runtime: HasHandle) -> dict[str, Any]:
        raw = getattr(self._cdll, name)(runtime.handle)
        assert raw is not None, f"{name} returned NULL"
        result: dict[str, Any] = json.loads(raw)
        return result

    def last_init(self, runtime: HasHandle) -> dict[str, Any]:
        return self._json("rkllm_sim_last_init", runtime)

    def last_run(self, runtime: HasHandle) -> dict[str, Any]:
        return self._json("rkllm_sim_last_run", runtime)

    def handle(self, runtime: HasHandle) -> dict[str, Any]:
        return self._json("rkllm_sim_handle", runtime)

    def stray_aborts(self, runtime: HasHandle) -> dict[str, int]:
        """``rkllm_abort`` calls the vendor does not document: on a handle with no inference in progress
        (``while_idle``), and aborts of runs that then ended by themselves (``without_effect``)."""
        record = self.handle(runtime)
        return {"while_idle": record["aborts_while_idle"], "without_effect": record["aborts_without_effect"]}
