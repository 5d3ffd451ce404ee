"""The exported functions of librkllmrt per ABI generation, with their exact C signatures."""

from __future__ import annotations

import ctypes
from ctypes import POINTER, c_char_p, c_int, c_void_p
from typing import Any

from rkio.runtime.rkllm.errors import AbiMismatch, RkllmSetupError
from rkio.runtime.rkllm.layouts import Generation, Layout

# LLMHandle is a void*; every function below returns int unless noted.
_HANDLE = c_void_p


def signatures(layout: Layout) -> dict[str, tuple[Any, list[Any]]]:
    """``name -> (restype, argtypes)`` for every function generation ``layout.generation`` exports."""
    g = layout.generation
    run_args = [_HANDLE, POINTER(layout.input), POINTER(layout.infer_param), c_void_p]
    # 1.3.0 passes a whole RKLLMCallback struct; a bare function pointer there crashes in rkllm_run (#509)
    init_callback = POINTER(layout.callback) if layout.callback is not None else layout.result_callback
    functions: dict[str, tuple[Any, list[Any]]] = {
        "rkllm_createDefaultParam": (layout.param, []),  # the struct comes back by value
        "rkllm_init": (c_int, [POINTER(_HANDLE), POINTER(layout.param), init_callback]),
        "rkllm_load_lora": (c_int, [_HANDLE, POINTER(layout.lora_adapter)]),
        "rkllm_load_prompt_cache": (c_int, [_HANDLE, c_char_p]),
        "rkllm_release_prompt_cache": (c_int, [_HANDLE]),
        "rkllm_destroy": (c_int, [_HANDLE]),
        "rkllm_run": (c_int, run_args),
        "rkllm_run_async": (c_int, run_args),
        "rkllm_abort": (c_int, [_HANDLE]),
        "rkllm_is_running": (c_int, [_HANDLE]),
    }
    if g >= Generation.V1_2_0:
        functions["rkllm_set_chat_template"] = (c_int, [_HANDLE, c_char_p, c_char_p, c_char_p])
        functions["rkllm_clear_kv_cache"] = (c_int, [_HANDLE, c_int])
    if g >= Generation.V1_2_1:
        functions["rkllm_clear_kv_cache"] = (c_int, [_HANDLE, c_int, POINTER(c_int), POINTER(c_int)])
        functions["rkllm_get_kv_cache_size"] = (c_int, [_HANDLE, POINTER(c_int)])
        functions["rkllm_set_function_tools"] = (c_int, [_HANDLE, c_char_p, c_char_p, c_char_p])
        functions["rkllm_set_cross_attn_params"] = (c_int, [_HANDLE, POINTER(layout.cross_attn_param)])
    return functions


class Library:
    """librkllmrt loaded with the signatures of one generation (a private CDLL, so no shared prototypes)."""

    def __init__(self, path: str, layout: Layout) -> None:
        self.path = path
        self.layout = layout
        try:
            self._cdll = ctypes.CDLL(path)
        except OSError as exc:
            raise RkllmSetupError(f"cannot load the rkllm runtime {path}: {exc}") from exc
        self.functions: dict[str, Any] = {}
        missing = []
        for name, (restype, argtypes) in signatures(layout).items():
            try:
                function = getattr(self._cdll, name)
            except AttributeError:
                missing.append(name)
                continue
            function.restype = restype
            function.argtypes = argtypes
            self.functions[name] = function
        if missing:
            raise AbiMismatch(
                f"{path} does not export {', '.join(missing)}, which ABI {layout.generation.label} needs: "
                "it is a different runtime generation. Unset RKIO_RKLLM_ABI (or set it to auto) to detect it."
            )

    def __getattr__(self, name: str) -> Any:
        try:
            return self.functions[name]
        except KeyError:
            raise AttributeError(name) from None
