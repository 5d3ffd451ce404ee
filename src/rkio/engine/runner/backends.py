"""Which ``Runtime`` implementation serves a model, imported only in the runner that needs it."""

from __future__ import annotations

from rkio.engine.types import ModelSpec
from rkio.runtime.base import Runtime


def create_runtime(spec: ModelSpec) -> Runtime:
    """A fresh, unloaded runtime for ``spec`` (rkllm: library and ABI from RKIO_RKLLM_LIB/RKIO_RKLLM_ABI)."""
    if spec.runtime == "rkllm":
        from rkio.runtime.rkllm import RkllmRuntime

        return RkllmRuntime(abi=spec.abi)
    if spec.runtime == "llamacpp":
        from rkio.runtime.llamacpp import LlamaCppRuntime

        return LlamaCppRuntime()
    raise ValueError(f"unknown runtime kind {spec.runtime!r} for model {spec.name}")
