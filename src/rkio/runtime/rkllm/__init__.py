"""librkllmrt (Rockchip's NPU LLM runtime) through ctypes, for every ABI generation from 1.1 to 1.3.0.

``RkllmRuntime`` locates the library (``$RKIO_RKLLM_LIB`` or the usual directories), chooses the ABI
(``$RKIO_RKLLM_ABI`` or detection from the library file) and implements ``rkio.runtime.base.Runtime``.
``find_library`` and ``detect_abi`` serve doctor/probe. See docs/runtime.md.
"""

from __future__ import annotations

from rkio.runtime.rkllm.detect import detect_abi, find_library, runtime_version
from rkio.runtime.rkllm.errors import AbiMismatch, AbiUndetectable, LibraryNotFound, RkllmSetupError
from rkio.runtime.rkllm.runtime import RkllmRuntime

__all__ = [
    "AbiMismatch",
    "AbiUndetectable",
    "LibraryNotFound",
    "RkllmRuntime",
    "RkllmSetupError",
    "detect_abi",
    "find_library",
    "runtime_version",
]
