"""rkllm's hidden-state and logits infer modes on llama.cpp, on the same context that generates.

How a GGUF model serves embeddings: the generation context switches llama.cpp's embedding output on for
the one run (``llama_set_embeddings``) and off again, as llama.cpp's own server does per batch for its
``/embeddings`` endpoint, rather than a second ``Llama(embedding=True)`` instance. A second instance
would double the context's KV cache and compute buffers, be a second model for the memory planner and
break "one runner, one handle"; toggling costs nothing. The KV cache is cleared before and after and
llama-cpp-python's prefix bookkeeping is reset, so the next generation starts clean.

With the context's pooling type NONE (causal LMs; what ``Llama`` gets unless the GGUF names a pooling)
llama.cpp returns one row per token, the final hidden states after the output norm, as rkllm does; rkio
pools them (``rkio.engine.embedding``). A GGUF that names a pooling (embedding models: mean, last, CLS)
returns one pooled row. The ``logits`` mode returns the last position's logits (one row), which is what
yes/no rerankers are scored from. Cross-encoder rerankers (rank pooling) are not served: their input
format differs per model and none was at hand to check one against.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from array import array
from typing import Any

from rkio.errors import ContextLengthExceeded, RuntimeFailure, Unsupported
from rkio.runtime.base import InferMode, RunOutputs


def _floats(pointer: Any, count: int) -> bytes:
    address = ctypes.cast(pointer, ctypes.c_void_p).value
    if not address:
        raise RuntimeFailure("llama.cpp returned no output for this run")
    data = ctypes.string_at(address, count * 4)
    if sys.byteorder != "little":
        values = array("f", data)
        values.byteswap()
        data = values.tobytes()
    return data


def _decode(llama: Any, tokens: list[int], start: int, outputs: bool, last_output: bool) -> None:
    """Decode ``tokens`` at positions ``start…`` in sequence 0; which of them produce outputs."""
    wrapper = llama._batch
    batch = wrapper.batch
    batch.n_tokens = len(tokens)
    for i, token in enumerate(tokens):
        batch.token[i] = token
        batch.pos[i] = start + i
        batch.seq_id[i][0] = 0
        batch.n_seq_id[i] = 1
        batch.logits[i] = outputs or (last_output and i == len(tokens) - 1)
    try:
        llama._ctx.decode(wrapper)
    except RuntimeError as exc:
        raise RuntimeFailure(f"llama.cpp could not evaluate the input: {exc}") from exc


def special_run(llama: Any, tokens: list[int], mode: InferMode, abort: threading.Event) -> RunOutputs | None:
    """The hidden states (one row per token, or one pooled row) or last logits of ``tokens``.

    Returns None when aborted. Raises ContextLengthExceeded when the input does not fit the context (or,
    for a pooling model, one batch: pooling needs the whole input in one decode).
    """
    import llama_cpp

    ctx = llama._ctx.ctx
    n_batch, n_ctx = int(llama.n_batch), int(llama.n_ctx())
    pooling = llama_cpp.llama_pooling_type(ctx)
    if mode == "hidden" and pooling == llama_cpp.LLAMA_POOLING_TYPE_RANK:
        # a cross-encoder's pooled output is its class scores, not n_embd floats
        raise Unsupported("embeddings of a rank-pooling (cross-encoder reranker) GGUF", "llama.cpp")
    pooled = mode == "hidden" and pooling != llama_cpp.LLAMA_POOLING_TYPE_NONE
    limit = n_batch if pooled else n_ctx
    if not tokens:
        raise RuntimeFailure("the input has no tokens")
    if len(tokens) > limit:
        raise ContextLengthExceeded(f"the input has {len(tokens)} tokens, more than this model's "
                                    f"{'batch' if pooled else 'context'} of {limit}")
    width = int(llama.n_embd()) if mode == "hidden" else int(llama.n_vocab())
    llama.reset()
    llama._ctx.kv_cache_clear()
    llama_cpp.llama_set_embeddings(ctx, mode == "hidden")
    try:
        chunks: list[bytes] = []
        for start in range(0, len(tokens), n_batch):
            if abort.is_set():
                return None
            chunk = tokens[start:start + n_batch]
            last = start + n_batch >= len(tokens)
            _decode(llama, chunk, start, outputs=mode == "hidden", last_output=last)
            if mode == "hidden" and not pooled:
                chunks.append(_floats(llama_cpp.llama_get_embeddings(ctx), len(chunk) * width))
        if pooled:
            pooled_row = _floats(llama_cpp.llama_get_embeddings_seq(ctx, 0), width)
            return RunOutputs("hidden", pooled_row, (1, width))
        if mode == "hidden":
            return RunOutputs("hidden", b"".join(chunks), (len(tokens), width))
        return RunOutputs("logits", _floats(llama_cpp.llama_get_logits_ith(ctx, -1), width), (1, width))
    finally:
        llama_cpp.llama_set_embeddings(ctx, False)
        llama._ctx.kv_cache_clear()
        llama.reset()  # llama-cpp-python's record of what the KV cache holds
