"""llama.cpp's AMX kernels are broken; where a build would use them, models load without them.

llama.cpp's AMX matrix kernels (used for the weights it repacks into "extra" buffers on CPUs with
AMX_INT8, e.g. Xeon Sapphire Rapids) crash or compute wrong results: llama-cpp-python 0.3.36 segfaults in
ggml_backend_amx_mul_mat on the first prompt of more than a few tokens, and 0.3.16 computes wrong logits
(its tile unpacking reads the wrong block). Same model, same prompts, the plain CPU path answers correctly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_log = logging.getLogger("rkio.runtime.llamacpp")
_AMX_FLAG = b"AMX_INT8 = 1"
_construction = threading.Lock()  # the model-params patch below is process-wide while it is in place


def _has_amx(llama_cpp: Any) -> bool:
    """Whether this llama.cpp build uses AMX kernels on this CPU (its system info says so)."""
    return _AMX_FLAG in bytes(llama_cpp.llama_print_system_info() or b"")


@contextmanager
def _construct_without_extra_buffers(llama_cpp: Any) -> Iterator[None]:
    """While in place, every ``Llama`` built gets model params with ``use_extra_bufts`` off.

    ``Llama`` takes no argument for it and builds its params from ``llama_model_default_params`` inside
    ``__init__``, so the default is wrapped for the duration of one construction.
    """
    bindings = llama_cpp.llama_cpp
    original = bindings.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    with _construction:
        bindings.llama_model_default_params = without_extra_buffers
        try:
            yield
        finally:
            bindings.llama_model_default_params = original


def construction_guard(llama_cpp: Any) -> Any:
    """What to hold while one ``Llama`` is built: the plain lock, or the lock with extra buffers off."""
    if not _has_amx(llama_cpp):
        return _construction
    _log.warning("llama.cpp uses AMX on this CPU; loading without its extra (AMX/repacked) buffers, "
                 "whose kernels crash or compute wrong results")
    return _construct_without_extra_buffers(llama_cpp)
