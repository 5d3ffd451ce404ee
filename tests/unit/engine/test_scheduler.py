"""Scheduler scenarios, synchronous, with a recording FakeEffects and a fake clock (no sleeps)."""

from __future__ import annotations

import signal

from engine_fakes import Harness, spec

from rkio.engine.events import Cancel, CloseLease, Shutdown, TokenStall, Unload
from rkio.engine.types import Loading, Queued
from rkio.errors import (
    Busy,
    GenerationTimeout,
    InsufficientMemory,
    InvalidRequest,
    LoadFailed,
    ModelQuarantined,
    QueueTimeout,
    ShuttingDown,
)
from rkio.units import GiB

A, B, C = spec("a"), spec("b"), spec("c")


def test_first_request_loads_then_is_granted() -> None:
    h = Harness()
    rid = h.request(A)
    assert h.fx.loads() == ["a"]
    assert h.fx.notices(rid) == [Loading("a"), Queued(0)]
    h.now = 2.0
    h.loaded("a")
    assert h.fx.granted() == [rid]
    assert h.fx.of("grant")[0][4] == 2.0  # load_s reported to the request that waited for the load


def test_loaded_model_is_granted_without_queue_notices() -> None:
    h = Harness()
    h.done(_served(h, A))
    rid = h.request(A)
    assert h.fx.granted()[-1] == rid
    assert h.fx.notices(rid) == []


def test_queue_is_fifo_per_model_and_positions_move() -> None:
    h = Harness()
    first = _served(h, A)
    second, third = h.request(A), h.request(A)
    assert h.fx.notices(second) == [Queued(0)] and h.fx.notices(third) == [Queued(1)]
    h.done(first)
    assert h.fx.granted()[-1] == second
    assert h.fx.notices(third)[-1] == Queued(0)


def test_queue_full_is_rejected_busy_with_retry_after() -> None:
    h = Harness(max_queue=2)
    _served(h, A)
    h.request(A), h.request(A)
    rid = h.request(A)
    [err] = h.fx.finished(rid)
    assert isinstance(err, Busy) and err.retry_after and err.retry_after >= 1


def test_queue_timeout() -> None:
    h = Harness(queue_timeout=30)
    _served(h, A)
    rid = h.request(A)
    assert h.s.next_deadline() == 30
    h.advance(29.9)
    assert h.fx.finished(rid) == []
    h.advance(0.2)
    [err] = h.fx.finished(rid)
    assert isinstance(err, QueueTimeout)


def test_cancel_while_queued_leaves_queue_and_others_move_up() -> None:
    h = Harness()
    first = _served(h, A)
    second, third = h.request(A), h.request(A)
    h.event(Cancel(second))
    assert h.fx.notices(third)[-1] == Queued(0)
    h.done(first)
    assert h.fx.granted()[-1] == third


def test_client_gone_at_grant_time_is_not_counted() -> None:
    h = Harness()
    first = _served(h, A)
    second, third = h.request(A), h.request(A)
    h.fx.gone.add(second)
    h.done(first)
    assert h.fx.granted()[-1] == third
    assert second not in h.s.running


def test_npu_lane_is_exclusive_across_models_but_cpu_models_run_alongside() -> None:
    cpu = spec("cpu", runtime="llamacpp")
    h = Harness()
    a = _served(h, A)
    b = h.request(B)
    h.loaded("b")
    assert b not in h.fx.granted()  # the single NPU lane is taken by a
    c = h.request(cpu)
    h.loaded("cpu")
    assert c in h.fx.granted()  # CPU model: no lane needed
    h.done(a)
    assert h.fx.granted()[-1] == b


def test_two_lanes_allow_two_models() -> None:
    h = Harness(npu_lanes=2)
    _served(h, A)
    b = h.request(B)
    h.loaded("b")
    assert b in h.fx.granted()


def test_another_models_load_does_not_block_a_loaded_model() -> None:
    h = Harness()
    h.done(_served(h, A))
    h.request(B)
    assert h.state("b") == "loading"
    rid = h.request(A)
    assert h.fx.granted()[-1] == rid


def test_one_load_at_a_time() -> None:
    h = Harness()
    h.request(A), h.request(B)
    assert h.fx.loads() == ["a"]
    h.loaded("a")
    assert h.fx.loads() == ["a", "b"]


def test_keep_alive_expiry_on_tick() -> None:
    h = Harness(keep_alive=300)
    h.done(_served(h, A))
    assert h.s.next_deadline() == 300
    h.advance(299)
    assert h.fx.stops() == []
    h.advance(1)
    assert h.fx.stops() == ["a"]
    h.exited("a")
    assert "a" not in h.s.models


def test_keep_alive_zero_unloads_right_after_the_request() -> None:
    h = Harness()
    rid = _served(h, A, keep_alive=0)
    assert h.fx.stops() == []
    h.done(rid)
    assert h.fx.stops() == ["a"]


def test_negative_keep_alive_and_pinned_never_expire() -> None:
    h = Harness()
    h.done(_served(h, A, keep_alive=-1))
    h.done(_served(h, spec("p", pinned=True)))
    assert h.s.next_deadline() is None
    h.advance(10**7)
    assert h.fx.stops() == []


def test_request_keep_alive_resets_model_session() -> None:
    h = Harness()
    h.done(_served(h, A, keep_alive=-1))
    h.done(_served(h, A, keep_alive=10))
    h.advance(10)
    assert h.fx.stops() == ["a"]


def test_load_failure_cooldown_doubles_and_reports_last_error() -> None:
    h = Harness()
    rid = h.request(A)
    h.load_failed("a", "E rkllm: unsupported model version")
    [err] = h.fx.finished(rid)
    assert isinstance(err, LoadFailed) and err.retry_after == 10
    assert "E rkllm: unsupported model version" in err.message
    again = h.request(A)  # during the cooldown: rejected at once, no load attempt
    assert isinstance(h.fx.finished(again)[0], LoadFailed) and h.fx.loads() == ["a"]
    h.now = 10
    rid = h.request(A)
    h.load_failed("a")
    assert h.fx.finished(rid)[0].retry_after == 20  # type: ignore[union-attr]
    h.now = 30
    h.request(A)
    h.loaded("a")
    assert h.s.failures["a"].failures == 0


def test_repeated_crashes_quarantine_the_model() -> None:
    h = Harness()
    for minute in range(3):
        h.now = minute * 60.0
        rid = _served(h, A)
        h.exited("a", signal=signal.SIGSEGV, during="generation")
        h.done(rid, "crashed")
    assert "a" in h.s.quarantined
    rid = h.request(A)
    [err] = h.fx.finished(rid)
    assert isinstance(err, ModelQuarantined) and "SIGSEGV" in err.message
    assert "rkio unload a" in err.message
    assert h.s.counters["crashes"] == 3
    h.event(Unload(98, "a"))  # the operator's reset
    assert "a" not in h.s.quarantined
    h.request(A)
    assert h.fx.loads()[-1] == "a"


def test_crash_frees_memory_only_on_exit_and_next_request_reloads() -> None:
    h = Harness()
    rid = _served(h, A)
    h.done(rid, "crashed")
    assert "a" in h.s.models  # not reaped yet: memory still counted
    h.exited("a", signal=signal.SIGKILL, during="generation")
    assert "a" not in h.s.models
    h.request(A)
    assert h.fx.loads() == ["a", "a"]


def test_stall_aborts_with_generation_timeout() -> None:
    h = Harness()
    rid = _served(h, A)
    h.event(TokenStall(rid, first_token=False))
    [(aborted, err)] = h.fx.aborts()
    assert aborted == rid and isinstance(err, GenerationTimeout)
    assert h.s.lanes_used == 1  # the lane frees only when the abort is confirmed
    h.done(rid, "error")
    assert h.s.lanes_used == 0


def test_eviction_of_idle_lru_when_memory_is_short() -> None:
    h = Harness(budget=5 * GiB)
    h.now = 1
    h.done(_served(h, spec("a", 2 * GiB)))
    h.now = 2
    h.done(_served(h, spec("b", 2 * GiB)))
    h.request(spec("c", 2 * GiB))
    assert h.fx.stops() == ["a"]  # least recently used
    assert h.fx.loads() == ["a", "b"]  # c waits for a's memory to come back
    h.exited("a")
    assert h.fx.loads()[-1] == "c"


def test_busy_model_is_not_evicted_load_waits() -> None:
    h = Harness(budget=3 * GiB)
    rid = _served(h, spec("a", 2 * GiB))
    h.request(spec("b", 2 * GiB))
    assert h.fx.stops() == []
    h.done(rid)
    assert h.fx.stops() == ["a"]


def test_insufficient_memory_names_needed_free_and_loaded() -> None:
    h = Harness(budget=3 * GiB)
    h.done(_served(h, spec("a", 2 * GiB, pinned=True)))
    rid = h.request(spec("big", 2 * GiB))
    [err] = h.fx.finished(rid)
    assert isinstance(err, InsufficientMemory)
    assert "big needs 2.0 GiB" in err.message and "a 2.0 GiB (pinned)" in err.message


def test_reinit_for_larger_context_waits_for_idle_and_covers_queue() -> None:
    h = Harness()
    first = _served(h, A)
    big = h.request(A, num_ctx=8192)
    bigger = h.request(A, num_ctx=16384)
    assert h.fx.stops() == []  # busy: no re-init under a running generation
    h.done(first)
    assert h.fx.stops() == ["a"] and h.s.counters["reinits"] == 1
    h.exited("a")
    assert h.fx.load_params("a").max_context_len == 16384  # one re-init serves the whole queue
    h.loaded("a")
    assert h.fx.granted()[-1] == big
    h.done(big)
    assert h.fx.granted()[-1] == bigger and h.fx.stops() == ["a"]


def test_smaller_context_request_runs_on_larger_loaded_context() -> None:
    h = Harness()
    h.done(_served(h, A, num_ctx=8192))
    rid = h.request(A, num_ctx=2048)
    assert h.fx.granted()[-1] == rid and h.fx.stops() == []


def test_reinit_that_cannot_fit_rejects_only_the_big_requests() -> None:
    h = Harness(budget=1 * GiB + 8192 * 1024)
    first = _served(h, A)
    big = h.request(A, num_ctx=16384)
    small = h.request(A)
    h.done(first)
    assert isinstance(h.fx.finished(big)[0], InsufficientMemory)
    assert h.fx.granted()[-1] == small and h.fx.stops() == []


def test_context_is_clamped_to_the_model_limit() -> None:
    h = Harness()
    h.request(spec("a", max_context_limit=8192), num_ctx=100000)
    assert h.fx.load_params("a").max_context_len == 8192


def test_unload_waits_for_the_generation_then_stops() -> None:
    h = Harness()
    rid = _served(h, A)
    h.event(Unload(99, "a"))
    assert h.fx.stops() == []
    h.done(rid)
    assert h.fx.stops() == ["a"]
    h.exited("a")
    assert h.fx.finished(99) == [None]


def test_lease_prevents_eviction_and_expiry() -> None:
    h = Harness(budget=3 * GiB)
    h.request(spec("a", 2 * GiB), kind="load", lease="L1", open_lease=True)
    h.loaded("a")
    assert h.s.leases == {"L1": "a"}
    h.advance(10**6)
    rid = h.request(spec("b", 2 * GiB))
    assert h.fx.stops() == [] and isinstance(h.fx.finished(rid)[0], InsufficientMemory)
    bad = h.request(A, lease="nope")
    assert isinstance(h.fx.finished(bad)[0], InvalidRequest)
    h.event(CloseLease("L1"))
    h.advance(300)
    assert h.fx.stops() == ["a"]


def test_shutdown_rejects_queue_and_stops_idle_runners() -> None:
    h = Harness()
    first = _served(h, A)
    queued = h.request(A)
    h.event(Shutdown())
    assert isinstance(h.fx.finished(queued)[0], ShuttingDown)
    assert h.fx.stops() == []
    h.event(Shutdown(abort=True))
    assert [rid for rid, _ in h.fx.aborts()] == [first]
    h.done(first, "error")
    assert h.fx.stops() == ["a"]
    h.exited("a")
    assert h.s.idle()


def _served(h: Harness, model: object, **kw: object) -> int:
    """Request on ``model`` and make sure it is granted (loading it when needed)."""
    rid = h.request(model, **kw)  # type: ignore[arg-type]
    name = model.name  # type: ignore[attr-defined]
    if rid not in h.fx.granted() and h.state(name) == "loading":
        h.loaded(name)
    assert rid in h.fx.granted(), h.fx.calls
    return rid


def test_far_back_waiters_hear_of_their_position_only_when_it_halves() -> None:
    from rkio.engine.dispatch import worth_telling

    told, heard = -1, []
    for position in range(200, -1, -1):
        if worth_telling(told, position):
            told = position
            heard.append(position)
    assert heard == [200, 127, 63, 31, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
