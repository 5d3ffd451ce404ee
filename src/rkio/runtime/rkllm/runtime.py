"""``RkllmRuntime``: one librkllmrt model handle behind the backend-neutral ``Runtime`` interface."""

from __future__ import annotations

import ctypes
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from ctypes import POINTER, c_float, c_int, c_int32, c_void_p
from typing import TYPE_CHECKING, Any

from rkio.errors import InvalidRequest, LoadFailed, RuntimeFailure, Unsupported
from rkio.runtime.base import (
    ChatTemplateOverride,
    CrossAttnParams,
    Feature,
    GenerateParams,
    GenerationResult,
    LoadParams,
    LoraAdapter,
    TokenSink,
    require,
)
from rkio.runtime.rkllm.cparams import Marshaller
from rkio.runtime.rkllm.detect import resolve
from rkio.runtime.rkllm.features import features_of
from rkio.runtime.rkllm.layouts import Generation, build_layout, float_buffer
from rkio.runtime.rkllm.prototypes import Library
from rkio.runtime.rkllm.session import CONTINUE, TOKEN_STATES, RunSession

if TYPE_CHECKING:
    from rkio.runtime.chat import ChatTemplate

DESTROY_WAIT_S = 30.0  # how long destroy waits for an aborted generation to return


class RkllmRuntime:
    """A librkllmrt model handle with the C types of the library's ABI generation.

    The result callback is a closure over this instance (no global registry), created at ``load`` and kept
    referenced until ``destroy``: the library may call it for as long as the handle lives.
    """

    def __init__(self, library: str | os.PathLike[str] | None = None, abi: str | None = None) -> None:
        path, generation, version = resolve(library, abi)
        self.library_path = path
        self.version = version  # the runtime version embedded in the library, when found
        self.generation = generation
        self.abi = generation.label
        self.name = f"rkllm-{self.abi}"
        self.features = features_of(generation, version)
        self._layout = build_layout(generation)
        self._lib = Library(str(path), self._layout)
        self._marshal = Marshaller(self._layout, self.features, self.name)
        self._handle: c_void_p | None = None
        self._load: LoadParams | None = None
        self._callbacks: list[Any] = []  # CFUNCTYPE objects (and RKLLMCallback) the library points at
        self._cross_attn: list[Any] = []  # buffers set_cross_attn_params handed to the library
        self._session: RunSession | None = None
        self._run_ids = itertools.count(1)
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()  # guards _session against abort()/destroy() from other threads

    @property
    def handle(self) -> int | None:
        """The raw LLMHandle while a model is loaded (for diagnostics and simulator introspection)."""
        return self._handle.value if self._handle is not None else None

    # -- lifecycle -------------------------------------------------------------------------------------

    def load(self, params: LoadParams) -> None:
        """rkllm_init with ``params``; raises ``LoadFailed`` when the runtime refuses the model."""
        if self._handle is not None:
            raise LoadFailed(f"{self.name}: a model is already loaded in this runtime")
        param = self._marshal.load_param(self._lib.rkllm_createDefaultParam(), params)
        callback = self._make_callback()
        handle = c_void_p()
        returned = self._lib.rkllm_init(ctypes.byref(handle), ctypes.byref(param), callback)
        if returned != 0 or not handle.value:
            self._callbacks.clear()
            raise LoadFailed(f"rkllm_init failed for {params.model_path} (returned {returned}); "
                             "the runtime's log says why")
        self._handle = handle
        self._load = params

    def _make_callback(self) -> Any:
        if self.generation >= Generation.V1_2_1:
            on_result: Callable[[Any, int | None, int], int | None] = self._on_result
        else:  # the callback returns void before 1.2.1

            def on_result(result: Any, userdata: int | None, state: int) -> None:
                self._on_result(result, userdata, state)

        function = self._layout.result_callback(on_result)
        self._callbacks = [function]
        if self._layout.callback is None:
            return function
        callbacks = self._layout.callback(result_callback=function)
        self._callbacks.append(callbacks)
        return ctypes.byref(callbacks)

    def _on_result(self, result: Any, userdata: int | None, state: int) -> int:
        try:
            session = self._session
            # userdata carries the run id: a late callback of an earlier run must not reach this one
            if session is None or userdata != session.run_id:
                return CONTINUE
            if state not in TOKEN_STATES:
                with self._lock:  # abort() checks ``ended`` under the lock: no abort after this point
                    return session.on_result(result, state)
            action = session.on_result(result, state)
            # A token callback is the one moment the run is certainly in progress, so this is where a
            # declined token stops it. It also repeats an abort() that raced the start of rkllm_run
            # (which clears the runtime's flag). Never at FINISH/ERROR: the vendor documents rkllm_abort
            # only for ongoing inference (rkllm-runtime.md §1.2), and there nothing is left to stop.
            wants_stop = session.stop_requested or session.abort_requested
            if wants_stop and not session.abort_sent and not session.ended and self._handle is not None:
                session.abort_sent = True
                self._lib.rkllm_abort(self._handle)
            return action
        except BaseException:  # an exception must never unwind into C
            return CONTINUE

    def destroy(self) -> None:
        """Abort a running generation, wait for it to return, then rkllm_destroy. Idempotent."""
        if self._handle is None:
            return
        self.abort()
        if not self._idle.wait(DESTROY_WAIT_S):
            # destroying under a running rkllm_run corrupts the runtime (rknn-llm #289)
            raise RuntimeFailure(f"{self.name}: generation did not stop within {DESTROY_WAIT_S:.0f}s")
        handle, self._handle = self._handle, None
        returned = self._lib.rkllm_destroy(handle)
        self._callbacks.clear()
        self._cross_attn.clear()
        self._load = None
        if returned != 0:
            raise RuntimeFailure(f"rkllm_destroy failed (returned {returned})")

    # -- generation ------------------------------------------------------------------------------------

    def generate(self, params: GenerateParams, on_token: TokenSink) -> GenerationResult:
        """Run one generation, calling ``on_token`` per token from this thread; blocks until it ends."""
        handle, load = self._loaded()
        run = self._marshal.run(params, load)
        with self._lock:
            if self._session is not None:
                raise RuntimeFailure(f"{self.name}: a generation is already running on this handle")
            session = RunSession(next(self._run_ids), on_token, run.max_new_tokens,
                                 Feature.PERF_STATS in self.features, params.mode)
            self._session = session
            self._idle.clear()
        try:
            returned = self._lib.rkllm_run(handle, ctypes.byref(run.input), ctypes.byref(run.infer),
                                           c_void_p(session.run_id))
        finally:
            with self._lock:
                self._session = None
                self._idle.set()
        return session.result(returned)

    def abort(self) -> None:
        """Stop the running generation (from any thread); its result reports finish "abort".

        rkllm_abort reaches the library only while a run is in progress: after rkllm_run entered C
        (``rkllm_is_running`` is 1 during prefill and decode, rknn-llm #502) and before the run reported
        FINISH or ERROR (checked under the lock the callback takes for those). Otherwise the request is
        only recorded, and the run's next token callback stops it.
        """
        with self._lock:
            session, handle = self._session, self._handle
            if session is None or handle is None or session.ended:
                return
            session.abort_requested = True
            if self._lib.rkllm_is_running(handle) != 1:
                return  # rkllm_run has not started (or already returned): the callback takes it from here
            if self._lib.rkllm_abort(handle) != 0:
                raise RuntimeFailure("rkllm_abort failed")

    def pause(self) -> None:
        """Pause the running generation at its next token, keeping the KV cache (finish "paused")."""
        require(self, Feature.PAUSE)
        with self._lock:
            if self._session is not None:
                self._session.pause_requested = True

    def is_running(self) -> bool:
        """True while a generation runs (rkllm_is_running is 1 during prefill/decode, rknn-llm #502)."""
        handle = self._handle
        if handle is None:
            return False
        return self._session is not None or self._lib.rkllm_is_running(handle) == 1

    # -- model state -----------------------------------------------------------------------------------

    def load_lora(self, adapter: LoraAdapter) -> None:
        require(self, Feature.LORA)
        c_adapter = self._layout.lora_adapter(adapter.path.encode(), adapter.name.encode(), adapter.scale)
        self._call("rkllm_load_lora", ctypes.byref(c_adapter))

    def load_prompt_cache(self, path: str) -> None:
        require(self, Feature.PROMPT_CACHE)
        self._call("rkllm_load_prompt_cache", path.encode())

    def release_prompt_cache(self) -> None:
        require(self, Feature.PROMPT_CACHE)
        self._call("rkllm_release_prompt_cache")

    def clear_kv_cache(
        self, keep_system_prompt: bool, ranges: Sequence[tuple[int, int]] | None = None
    ) -> None:
        """Clear the KV cache; ``ranges`` are per-batch [start, end) positions (1.2.1+)."""
        require(self, Feature.CLEAR_KV_CACHE)
        if self.generation < Generation.V1_2_1:
            if ranges is not None:
                raise Unsupported(Feature.CLEAR_KV_CACHE_RANGES.value, self.name)
            self._call("rkllm_clear_kv_cache", int(keep_system_prompt))
            return
        if ranges is None:
            self._call("rkllm_clear_kv_cache", int(keep_system_prompt), None, None)
            return
        _, load = self._loaded()
        if len(ranges) != load.n_batch:
            raise InvalidRequest(
                f"clear_kv_cache needs one range per batch ({load.n_batch}), got {len(ranges)}"
            )
        starts = (c_int * len(ranges))(*(start for start, _ in ranges))
        ends = (c_int * len(ranges))(*(end for _, end in ranges))
        self._call("rkllm_clear_kv_cache", int(keep_system_prompt), starts, ends)

    def kv_cache_size(self) -> list[int]:
        """Current KV cache position of every batch slot."""
        require(self, Feature.KV_CACHE_SIZE)
        _, load = self._loaded()
        sizes = (c_int * load.n_batch)()
        self._call("rkllm_get_kv_cache_size", sizes, ok=lambda returned: returned >= 0)
        return list(sizes)

    def set_chat_template(self, template: ChatTemplateOverride) -> None:
        require(self, Feature.CHAT_TEMPLATE)
        self._call("rkllm_set_chat_template", template.system_prompt.encode(),
                   template.prompt_prefix.encode(), template.prompt_postfix.encode())

    def set_function_tools(self, system_prompt: str, tools_json: str, tool_response_str: str) -> None:
        require(self, Feature.FUNCTION_TOOLS)
        self._call("rkllm_set_function_tools", system_prompt.encode(), tools_json.encode(),
                   tool_response_str.encode())

    def set_cross_attn_params(self, params: CrossAttnParams) -> None:
        require(self, Feature.CROSS_ATTN)
        assert self._layout.cross_attn_param is not None
        floats = [float_buffer(params.encoder_k_cache), float_buffer(params.encoder_v_cache),
                  float_buffer(params.encoder_mask)]
        positions = (c_int32 * len(params.encoder_pos))(*params.encoder_pos)
        pointers = [ctypes.cast(buffer, POINTER(c_float)) for buffer in floats]
        c_params = self._layout.cross_attn_param(*pointers, ctypes.cast(positions, POINTER(c_int32)),
                                                 params.num_tokens)
        self._call("rkllm_set_cross_attn_params", ctypes.byref(c_params))
        # the runtime reads the encoder caches during later runs, so they live until replaced
        self._cross_attn = [*floats, positions, c_params]

    def chat_template(self) -> ChatTemplate | None:
        """rkllm applies the model's template itself and does not expose it."""
        return None

    def count_tokens(self, text: str) -> int | None:
        """rkllm has no tokenizer entry point."""
        return None

    # -- helpers ---------------------------------------------------------------------------------------

    def _loaded(self) -> tuple[c_void_p, LoadParams]:
        if self._handle is None or self._load is None:
            raise RuntimeFailure(f"{self.name}: no model is loaded")
        return self._handle, self._load

    def _call(self, function: str, *args: Any, ok: Callable[[int], bool] = (0).__eq__) -> None:
        handle, _ = self._loaded()
        returned = getattr(self._lib, function)(handle, *args)
        if not ok(returned):
            raise RuntimeFailure(f"{function} failed (returned {returned}); the runtime's log says why")
