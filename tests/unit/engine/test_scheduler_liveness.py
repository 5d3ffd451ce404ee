"""Runner liveness in the scheduler: death is an event (EOF), kills are ours, grants never reach the dead."""

from __future__ import annotations

import signal

from engine_fakes import Harness, spec

from rkio.engine.events import RunnerDied, RunnerKilled

A, B = spec("a"), spec("b")


def _loaded(h: Harness, model: str = "a") -> None:
    h.request(spec(model), kind="load")
    h.loaded(model)


def test_a_runner_dead_at_eof_is_granted_nothing_and_its_waiter_is_served_by_the_next_one() -> None:
    h = Harness()
    _loaded(h)
    inc = h.fx.incarnation("a")
    h.event(RunnerDied("a", inc))
    assert h.state("a") == "stopping"  # memory still counted until the reap
    rid = h.request(A)
    assert h.fx.granted() == [] and rid in h.s.waiters
    h.exited("a", signal=signal.SIGSEGV, during="idle")
    assert h.s.counters["crashes"] == 1  # it died by itself: a crash
    assert h.fx.loads() == ["a", "a"]
    h.loaded("a")
    assert h.fx.granted() == [rid]
    assert h.fx.of("grant")[0][3] == h.fx.incarnation("a") != inc


def test_a_grant_that_finds_the_runner_gone_keeps_the_waiter_queued() -> None:
    h = Harness()
    _loaded(h)
    inc = h.fx.incarnation("a")
    h.fx.dead.add(("a", inc))  # the shell saw EOF; RunnerDied is still on its way
    rid = h.request(A)
    assert h.fx.granted() == [] and rid in h.s.waiters and h.fx.finished(rid) == []
    assert h.state("a") == "stopping"
    h.event(RunnerDied("a", inc))
    h.exited("a", signal=signal.SIGKILL, during="idle")
    h.loaded("a")
    assert h.fx.granted() == [rid]


def test_a_runner_dying_under_a_generation_frees_the_lane_only_when_the_generation_ends() -> None:
    h = Harness()
    _loaded(h)
    rid = h.request(A)
    other = h.request(B)
    h.event(RunnerDied("a", h.fx.incarnation("a")))
    assert h.s.lanes_used == 1 and rid in h.s.running  # the request's own task reports the end
    h.done(rid, "crashed")
    assert h.s.lanes_used == 0 and h.state("a") == "stopping"
    h.loaded("b")
    assert h.fx.granted() == [rid, other]


def test_a_kill_rkio_makes_is_not_a_crash_and_the_killed_runner_is_never_idle() -> None:
    h = Harness()
    _loaded(h)
    inc = h.fx.incarnation("a")
    rid = h.request(A)
    waiting = h.request(A)
    h.event(RunnerKilled("a", inc, "the runtime did not stop within 5 s of an abort"))
    h.done(rid, "crashed")  # the stream saw the runner die: still our kill
    h.event(RunnerDied("a", inc))
    assert h.state("a") == "stopping" and h.fx.granted() == [rid]
    current = waiting
    for _ in range(3):  # three kills in a row never quarantine a healthy model
        h.exited("a", signal=signal.SIGKILL, during="generation")
        h.loaded("a")
        assert h.fx.granted()[-1] == current
        h.event(RunnerKilled("a", h.fx.incarnation("a"), "abort timeout"))
        h.done(current, "killed")
        current = h.request(A)
    assert h.s.counters["crashes"] == 0 and h.s.counters["kills"] == 4
    assert "a" not in h.s.quarantined


def test_a_generation_ended_by_a_kill_leaves_the_model_stopping() -> None:
    h = Harness()
    _loaded(h)
    rid = h.request(A)
    h.done(rid, "killed")
    assert h.state("a") == "stopping" and h.s.lanes_used == 0
    h.exited("a", signal=signal.SIGKILL, during="generation")
    assert h.s.counters["crashes"] == 0 and "a" not in h.s.models
