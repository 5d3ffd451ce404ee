"""Sampling re-init (``sampling = "reinit"`` in model.toml): grouped, bounded, never under a generation.

Scenarios against the pure scheduler with a recording Effects and a fake clock (rkio.engine.sampling_groups).
"""

from __future__ import annotations

from engine_fakes import Harness, spec

from rkio.engine.sampling_groups import MAX_OVERTAKES
from rkio.errors import QueueTimeout
from rkio.runtime.base import Sampling

R = spec("r", sampling_policy="reinit")
COLD, HOT = Sampling(temperature=0.2), Sampling(temperature=1.3)


def _serve_first(h: Harness, **kw: object) -> int:
    rid = h.request(R, **kw)  # type: ignore[arg-type]
    h.loaded("r")
    assert h.fx.granted() == [rid]
    return rid


def test_the_first_load_takes_the_first_sampling_wish_in_the_queue() -> None:
    h = Harness()
    other = h.request(spec("other"))  # one load at a time: r's requests queue meanwhile
    rid = h.request(R)  # no wish: any sampling will do
    h.request(R, sampling=HOT)
    h.loaded("other")
    h.done(other)
    assert h.fx.load_params("r").sampling == HOT  # one load serves both
    h.loaded("r")
    assert h.fx.granted()[-1] == rid


def test_a_different_sampling_waits_for_idle_then_re_inits_once_for_the_group() -> None:
    h = Harness()
    first = _serve_first(h, sampling=COLD)
    hot1, hot2 = h.request(R, sampling=HOT), h.request(R, sampling=HOT)
    assert h.fx.stops() == []  # never under a running generation
    h.done(first)
    assert h.fx.stops() == ["r"] and h.s.counters["sampling_reinits"] == 1
    h.exited("r")
    assert h.fx.load_params("r").sampling == HOT
    h.loaded("r")
    assert h.fx.granted()[-1] == hot1
    h.done(hot1)
    assert h.fx.granted()[-1] == hot2 and h.fx.stops() == ["r"]  # the group rides the same re-init


def test_waiters_the_loaded_sampling_serves_go_first_then_the_head_re_inits() -> None:
    h = Harness()
    first = _serve_first(h, sampling=COLD)
    hot = h.request(R, sampling=HOT)
    cold = h.request(R, sampling=COLD)
    any_ = h.request(R)
    h.done(first)
    assert h.fx.granted()[-1] == cold and h.fx.stops() == []  # served before paying for the re-init
    h.done(cold)
    assert h.fx.granted()[-1] == any_
    h.done(any_)
    assert h.fx.stops() == ["r"]  # only now: the head's re-init
    h.exited("r")
    h.loaded("r")
    assert h.fx.granted()[-1] == hot and h.s.counters["sampling_reinits"] == 1


def test_a_head_is_overtaken_a_bounded_number_of_times() -> None:
    h = Harness()
    running = _serve_first(h, sampling=COLD)
    hot = h.request(R, sampling=HOT)
    colds = [h.request(R, sampling=COLD) for _ in range(MAX_OVERTAKES + 3)]
    for expected in colds[:MAX_OVERTAKES]:
        h.done(running)
        assert h.fx.granted()[-1] == expected
        running = expected
    h.done(running)
    assert h.fx.stops() == ["r"]  # the head's turn: no more overtaking
    h.exited("r")
    h.loaded("r")
    assert h.fx.granted()[-1] == hot


def test_alternating_wishes_re_init_only_when_the_head_changes_sampling() -> None:
    h = Harness()
    running = _serve_first(h, sampling=COLD)
    order = [h.request(R, sampling=s) for s in (HOT, COLD, HOT, COLD)]
    served = []
    while len(served) < len(order):
        h.done(running)
        if h.state("r") == "stopping":
            h.exited("r")
            h.loaded("r")
        running = h.fx.granted()[-1]
        served.append(running)
    # cold requests overtake the first hot head; then one re-init serves both hot ones
    assert served == [order[1], order[3], order[0], order[2]]
    assert h.s.counters["sampling_reinits"] == 1


def test_same_sampling_except_the_seed_needs_no_re_init() -> None:
    h = Harness()
    first = _serve_first(h, sampling=COLD)
    seeded = h.request(R, sampling=Sampling(temperature=0.2, seed=7))  # rkllm has no seed
    h.done(first)
    assert h.fx.granted()[-1] == seeded and h.fx.stops() == []


def test_a_waiter_for_a_re_init_still_times_out() -> None:
    h = Harness(queue_timeout=30)
    _serve_first(h, sampling=COLD)  # never finishes
    hot = h.request(R, sampling=HOT)
    h.advance(31)
    [err] = h.fx.finished(hot)
    assert isinstance(err, QueueTimeout) and h.fx.stops() == []


def test_without_wishes_nothing_changes() -> None:
    h = Harness()
    first = _serve_first(h)
    second = h.request(R)
    h.done(first)
    assert h.fx.granted()[-1] == second and h.fx.stops() == [] and h.s.counters["sampling_reinits"] == 0
