"""Copying the hidden states or logits of a GET_LAST_HIDDEN_LAYER / GET_LOGITS run out of its callback.

The runtime owns those buffers only for the duration of the callback: "the next callback frees that
pointer" (rknn-llm examples/rkllm_api_demo/deploy/src/llm_demo.cpp, v1.3.0), so they are copied at once.
"""

from __future__ import annotations

import array
import ctypes
import sys
from typing import Any

from rkio.runtime.base import InferMode, RunOutputs


def copy_outputs(result: Any, mode: InferMode) -> RunOutputs | None:
    """The float32 block ``result`` (an ``RKLLMResult``) carries for ``mode``, or None when it has none.

    Hidden states are ``num_tokens x embd_size``; logits ``num_tokens x vocab_size`` (RKLLMResultLogits,
    rkllm.h 1.2.0+). Data is returned little-endian whatever the host's byte order.
    """
    if mode == "hidden":
        block, pointer, width = result.last_hidden_layer, "hidden_states", "embd_size"
    elif mode == "logits":
        block, pointer, width = result.logits, "logits", "vocab_size"
    else:
        return None
    address = ctypes.cast(getattr(block, pointer), ctypes.c_void_p).value
    rows, columns = int(block.num_tokens), int(getattr(block, width))
    if not address or rows <= 0 or columns <= 0:
        return None
    data = ctypes.string_at(address, rows * columns * 4)
    if sys.byteorder != "little":
        values = array.array("f", data)
        values.byteswap()
        data = values.tobytes()
    return RunOutputs(mode, data, (rows, columns))
