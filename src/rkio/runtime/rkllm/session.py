"""The state of one rkllm_run as seen from its result callback.

The callback runs on the runtime's thread inside C, so nothing here may raise: failures are recorded and
re-raised by ``RkllmRuntime.generate`` once rkllm_run has returned.
"""

from __future__ import annotations

from typing import Any

from rkio.errors import RuntimeFailure
from rkio.runtime.base import FinishReason, GenerationResult, InferMode, Perf, RunOutputs, Token, TokenSink
from rkio.runtime.rkllm.layouts import (
    RUN_ERROR,
    RUN_FINISH,
    RUN_GET_LAST_HIDDEN_LAYER,
    RUN_NORMAL,
    RUN_WAITING,
)
from rkio.runtime.rkllm.outputs import copy_outputs
from rkio.runtime.utf8 import Utf8Reassembler

CONTINUE, PAUSE = 0, 1  # what an int-returning result callback tells the runtime (1.2.1+; void before)
TOKEN_STATES = frozenset((RUN_NORMAL, RUN_WAITING))  # callbacks of a run that is still generating


class RunSession:
    """Turns result callbacks into whole-character ``Token``s for ``sink`` and a ``GenerationResult``."""

    def __init__(self, run_id: int, sink: TokenSink, max_new_tokens: int, has_perf: bool,
                 mode: InferMode = "generate") -> None:
        self.run_id = run_id
        self.mode = mode
        self.outputs: RunOutputs | None = None
        self.sink = sink
        self.max_new_tokens = max_new_tokens
        self.has_perf = has_perf
        self.decoder = Utf8Reassembler()
        self.n_tokens = 0
        self.last_token_id = -1
        self.finished = False
        self.stop_requested = False  # the sink declined more tokens (or raised)
        self.abort_requested = False  # abort() from another thread
        self.abort_sent = False  # rkllm_abort was called from the callback
        self.pause_requested = False
        self.paused = False
        self.error: BaseException | None = None
        self.runtime_error = False
        self.perf: Perf | None = None

    def on_result(self, result: Any, state: int) -> int:
        """Handle one callback; returns CONTINUE or PAUSE. Never raises."""
        try:
            if state in TOKEN_STATES and self.mode == "generate":
                # a token: checked first, the path every callback but the last takes
                if not result or self.stop_requested or self.abort_requested:
                    return CONTINUE  # tokens still in flight after a stop are not the caller's any more
                contents = result.contents
                self.n_tokens += 1
                self.last_token_id = contents.token_id
                self._deliver(contents.text or b"", counted=True)
                if self.pause_requested and not self.stop_requested:
                    self.paused = True
                    return PAUSE
                return CONTINUE
            return self._handle(result, state)
        except BaseException as exc:  # nothing may propagate into C
            self.error = exc
            self.stop_requested = True
            return CONTINUE

    def _handle(self, result: Any, state: int) -> int:
        if state == RUN_FINISH:
            self.finished = True
            if result:
                self._deliver(result.contents.text or b"", counted=False)
                if self.has_perf:
                    self.perf = _perf(result.contents.perf)
            self._emit(self.decoder.flush())
            return CONTINUE
        if state == RUN_ERROR:
            self.runtime_error = True
            return CONTINUE
        if self.mode != "generate":
            return self._special(result, state)
        return CONTINUE

    def _special(self, result: Any, state: int) -> int:
        # a hidden-layer or logits run delivers one result (NORMAL, or state 4 in 1.1.x) and no text
        if result and state in (RUN_NORMAL, RUN_GET_LAST_HIDDEN_LAYER) and self.outputs is None:
            self.outputs = copy_outputs(result.contents, self.mode)
        return CONTINUE

    def _deliver(self, data: bytes, counted: bool) -> None:
        text = self.decoder.feed(data)
        if text or (counted and not self.decoder.pending):
            self._emit(text, always=True)

    def _emit(self, text: str, always: bool = False) -> None:
        if not (text or always) or self.stop_requested:
            return
        if self.sink(Token(text, self.last_token_id)) is False:
            self.stop_requested = True

    @property
    def ended(self) -> bool:
        """The runtime reported the end of the run (FINISH, ERROR) or was told to pause."""
        return self.finished or self.runtime_error or self.paused

    def result(self, returned: int) -> GenerationResult:
        """The outcome once rkllm_run returned ``returned``; raises what the run recorded."""
        if self.error is not None:
            raise self.error
        finish: FinishReason
        if self.stop_requested or self.abort_requested:
            finish = "abort"
        elif self.paused:
            finish = "paused"
        elif self.runtime_error or returned != 0:
            raise RuntimeFailure(
                f"rkllm_run failed (returned {returned}, error state: {self.runtime_error}); "
                "the runtime's log says why"
            )
        elif self.mode != "generate" and self.outputs is None:
            raise RuntimeFailure(f"rkllm_run in mode {self.mode} returned no {self.mode} output")
        elif 0 < self.max_new_tokens <= self.n_tokens:
            finish = "length"
        else:
            finish = "stop"
        return GenerationResult(finish=finish, n_tokens=self.n_tokens, perf=self.perf, outputs=self.outputs)


def _perf(perf: Any) -> Perf:
    return Perf(
        prefill_ms=float(perf.prefill_time_ms),
        prefill_tokens=int(perf.prefill_tokens),
        generate_ms=float(perf.generate_time_ms),
        generate_tokens=int(perf.generate_tokens),
        memory_usage_mb=float(perf.memory_usage_mb),
    )
