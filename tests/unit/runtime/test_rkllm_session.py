"""Result callbacks -> whole-character tokens and a GenerationResult, without a library."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from rkio.errors import RuntimeFailure
from rkio.runtime.base import Token
from rkio.runtime.rkllm.layouts import (
    RUN_ERROR,
    RUN_FINISH,
    RUN_NORMAL,
    RUN_WAITING,
    Generation,
    build_layout,
)
from rkio.runtime.rkllm.session import CONTINUE, PAUSE, RunSession

LAYOUT = build_layout(Generation.V1_2_1)


class Feed:
    """Drives a session with results shaped like the runtime's."""

    def __init__(self, session: RunSession) -> None:
        self.session = session
        self.keep: list[Any] = []

    def __call__(self, state: int, text: bytes | None = None, token_id: int = 0, **perf: float) -> int:
        result = LAYOUT.result()
        if text is not None:
            buffer = ctypes.create_string_buffer(text)
            self.keep.append(buffer)
            result.text = ctypes.addressof(buffer)
        result.token_id = token_id
        for name, value in perf.items():
            setattr(result.perf, name, value)
        return self.session.on_result(ctypes.pointer(result), state)


def session(sink: Any = None, max_new_tokens: int = 100) -> tuple[RunSession, list[Token]]:
    tokens: list[Token] = []
    return RunSession(1, sink or tokens.append, max_new_tokens, has_perf=True), tokens


def test_multibyte_character_split_over_waiting_callbacks_reaches_the_sink_whole() -> None:
    run, tokens = session()
    feed = Feed(run)
    euro = "€".encode()
    feed(RUN_NORMAL, b"price ", 1)
    feed(RUN_WAITING, euro[:1], 2)
    feed(RUN_WAITING, euro[1:2], 3)
    feed(RUN_NORMAL, euro[2:] + b"5", 4)
    feed(RUN_FINISH, None, prefill_time_ms=1.5, prefill_tokens=3, generate_time_ms=2.0, generate_tokens=4,
         memory_usage_mb=10.0)
    assert tokens == [Token("price ", 1), Token("€5", 4)]
    result = run.result(0)
    assert (result.finish, result.n_tokens) == ("stop", 4)
    assert result.perf is not None and (result.perf.prefill_tokens, result.perf.memory_usage_mb) == (3, 10.0)


def test_a_partial_character_left_at_finish_becomes_a_replacement_character() -> None:
    run, tokens = session()
    feed = Feed(run)
    feed(RUN_WAITING, "é".encode()[:1], 7)
    feed(RUN_FINISH)
    assert tokens == [Token("\ufffd", 7)]


def test_reaching_max_new_tokens_is_length_and_empty_tokens_are_still_tokens() -> None:
    run, tokens = session(max_new_tokens=2)
    feed = Feed(run)
    feed(RUN_NORMAL, b"", 5)
    feed(RUN_NORMAL, b"a", 6)
    feed(RUN_FINISH)
    assert tokens == [Token("", 5), Token("a", 6)]
    assert run.result(0).finish == "length"


def test_sink_returning_false_stops_delivery_and_reports_abort() -> None:
    delivered: list[Token] = []

    def sink(token: Token) -> bool:
        delivered.append(token)
        return len(delivered) < 2

    run, _ = session(sink)
    feed = Feed(run)
    for word in (b"a", b"b", b"c"):
        feed(RUN_NORMAL, word)
    assert run.stop_requested
    assert [t.text for t in delivered] == ["a", "b"]
    assert run.result(0) == run.result(-1)
    assert run.result(0).finish == "abort"


def test_an_exception_in_the_sink_is_recorded_not_raised_into_c_then_reraised() -> None:
    def sink(token: Token) -> bool:
        raise KeyError("boom")

    run, _ = session(sink)
    assert Feed(run)(RUN_NORMAL, b"x") == CONTINUE
    with pytest.raises(KeyError):
        run.result(0)


def test_pause_request_returns_pause_to_the_runtime() -> None:
    run, tokens = session()
    feed = Feed(run)
    assert feed(RUN_NORMAL, b"a") == CONTINUE
    run.pause_requested = True
    assert feed(RUN_NORMAL, b"b") == PAUSE
    assert [t.text for t in tokens] == ["a", "b"]
    assert run.result(0).finish == "paused"


def test_error_state_or_failed_run_raise_runtime_failure() -> None:
    run, _ = session()
    Feed(run)(RUN_ERROR)
    with pytest.raises(RuntimeFailure, match="error state: True"):
        run.result(0)
    run, _ = session()
    with pytest.raises(RuntimeFailure, match="returned -1"):
        run.result(-1)


def test_abort_from_outside_drops_tokens_still_in_flight() -> None:
    run, tokens = session()
    feed = Feed(run)
    feed(RUN_NORMAL, b"a")
    run.abort_requested = True
    feed(RUN_NORMAL, b"b")
    feed(RUN_FINISH)
    assert [t.text for t in tokens] == ["a"]
    assert run.result(0) == run.result(0).__class__("abort", 1, run.perf)
