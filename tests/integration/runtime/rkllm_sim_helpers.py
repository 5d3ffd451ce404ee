"""Simulator introspection and small helpers shared by the rkllm integration tests."""

from __future__ import annotations

from collections.abc import Callable

from rkio.runtime.base import Token
from simkit.introspect import Sim

__all__ = ["ABI_OF", "FLAVOURS", "SIM_ENV", "Sim", "collect"]  # Sim lives in simkit now

FLAVOURS = ("1.1.4", "1.2.0", "1.2.1", "1.2.3", "1.3.0")
ABI_OF = {"1.1.4": "1.1", "1.2.0": "1.2.0", "1.2.1": "1.2.1", "1.2.3": "1.2.1", "1.3.0": "1.3.0"}
SIM_ENV = ("RKLLM_SIM_FAULT", "RKLLM_SIM_OVERCOMMIT", "RKLLM_SIM_TOKEN_US", "RKLLM_SIM_PREFILL_US",
           "RKLLM_SIM_INIT_MS", "RKLLM_SIM_RAM", "RKIO_RKLLM_LIB", "RKIO_RKLLM_ABI")


def collect(tokens: list[Token]) -> Callable[[Token], bool]:
    def sink(token: Token) -> bool:
        tokens.append(token)
        return True

    return sink
