"""Leases with load overrides (share / managed re-init / refusal) and the KV exclusivity rule, on the pure
scheduler with a fake clock."""

from __future__ import annotations

import signal
from dataclasses import replace

import pytest
from engine_fakes import Harness, spec

from rkio.engine import leases
from rkio.engine.events import CloseLease, LoadDone
from rkio.engine.kv_exclusive import KvExclusivity
from rkio.engine.ledger import Waiter
from rkio.engine.types import LoadOverrides, ModelSpec
from rkio.errors import InvalidRequest, QueueTimeout, RunnerCrashed

A = spec("a")


def _with(base: ModelSpec, **overrides: object) -> ModelSpec:
    return replace(base, load=leases.apply_overrides(base.load, LoadOverrides(**overrides)))  # type: ignore[arg-type]


def _open(h: Harness, lease: str, model: ModelSpec = A, *, features: frozenset[str] = frozenset()) -> int:
    rid = h.request(model, kind="load", lease=lease, open_lease=True)
    if h.state(model.name) == "loading":
        h.s.handle(LoadDone(model.name, h.fx.incarnation(model.name), 1000, None, features), h.now)
    return rid


def _run(h: Harness, lease: str | None, keep_history: bool | None = None) -> int:
    return h.request(A, lease=lease, keep_history=keep_history)


# ---------------------------------------------------------------------------------------- KV exclusivity


def test_a_lease_keeping_history_holds_the_instance_and_its_own_requests_overtake() -> None:
    h = Harness()
    _open(h, "L1")
    first = _run(h, "L1", keep_history=True)
    assert h.fx.granted() == [first]
    http = _run(h, None)
    again = _run(h, "L1", keep_history=True)  # queued behind the HTTP request
    h.done(first)
    assert h.fx.granted()[-1] == again  # the owner goes first; the HTTP request keeps waiting
    h.done(again)
    assert http not in h.fx.granted()
    release = _run(h, "L1", keep_history=False)
    assert h.fx.granted()[-1] == release
    h.done(release)
    assert h.fx.granted()[-1] == http  # the history was dropped: everyone else may run again


def test_other_waiters_keep_their_queue_deadline_while_a_lease_holds_the_kv() -> None:
    h = Harness(queue_timeout=30)
    _open(h, "L1")
    h.done(_run(h, "L1", keep_history=True))
    other = _run(h, None)
    h.advance(31)
    [err] = h.fx.finished(other)
    assert isinstance(err, QueueTimeout)


def test_closing_the_lease_releases_the_instance() -> None:
    h = Harness()
    _open(h, "L1")
    _open(h, "L2")
    h.done(_run(h, "L1", keep_history=True))
    waiting = _run(h, "L2", keep_history=True)
    assert waiting not in h.fx.granted()
    h.event(CloseLease("L1"))
    assert h.fx.granted()[-1] == waiting


def test_a_failed_run_of_a_newcomer_does_not_take_the_kv() -> None:
    kv = KvExclusivity()
    kv.run_ended("a", "L1", True, ok=False)
    assert kv.owners == {}
    kv.run_ended("a", "L1", True, ok=True)
    kv.run_ended("a", "L1", True, ok=False)  # the owner's own failed turn: its history is still there
    assert kv.owners == {"a": "L1"}
    kv.run_ended("a", "L2", None, ok=True)  # a call that leaves the KV alone
    assert kv.owners == {"a": "L1"}
    kv.model_gone("a")
    assert kv.owners == {}


def test_grantable_is_the_head_unless_an_owner_holds_the_model() -> None:
    kv = KvExclusivity()
    waiters = [Waiter(i, A, "generate", 4096, None, 0.0, 9.0, i, lease) for i, lease in
               enumerate([None, "L2", "L1"])]
    assert kv.grantable("a", waiters) is waiters[0]
    kv.owners["a"] = "L1"
    assert kv.grantable("a", waiters) is waiters[2]
    assert kv.grantable("a", waiters[:2]) is None


def test_a_crash_kills_the_leases_on_the_model_and_ends_their_hold() -> None:
    h = Harness()
    _open(h, "L1")
    run = _run(h, "L1", keep_history=True)
    h.done(run, "crashed")
    h.exited("a", signal=signal.SIGSEGV, during="generation")
    assert h.s.kv.owners == {} and "L1" not in h.s.leases
    later = _run(h, "L1")
    [err] = h.fx.finished(later)
    assert isinstance(err, RunnerCrashed)
    h.event(CloseLease("L1"))
    assert "L1" not in h.s.dead_leases


# ---------------------------------------------------------------------------------------- load overrides


def test_same_overrides_share_one_instance() -> None:
    h = Harness()
    wanted = _with(A, temperature=0.2, n_keep=8)
    _open(h, "L1", wanted)
    second = _open(h, "L2", wanted)
    assert h.fx.loads() == ["a"] and h.fx.finished(second) == [None]
    assert h.s.leases == {"L1": "a", "L2": "a"}
    assert h.fx.load_params("a").n_keep == 8


def test_other_overrides_on_a_held_instance_are_refused_naming_the_fields() -> None:
    h = Harness()
    _open(h, "L1")
    refused = _open(h, "L2", _with(A, n_keep=16, temperature=0.1))
    [err] = h.fx.finished(refused)
    assert isinstance(err, InvalidRequest)
    assert "n_keep" in err.message and "temperature" in err.message
    assert h.fx.loads() == ["a"] and "L2" not in h.s.leases


def test_other_overrides_on_an_instance_nobody_holds_re_init_it() -> None:
    h = Harness()
    h.done(_run_loaded(h))
    rid = _open(h, "L1", _with(A, n_keep=16))
    assert h.fx.stops() == ["a"] and h.fx.finished(rid) == []
    h.exited("a")
    assert h.fx.load_params("a").n_keep == 16
    h.loaded("a")
    assert h.fx.finished(rid) == [None] and h.s.counters["reinits"] == 1


def test_sampling_applied_per_run_is_no_conflict_on_runtimes_that_can() -> None:
    h = Harness()
    _open(h, "L1", features=frozenset({"per-request sampling"}))
    shared = _open(h, "L2", _with(A, temperature=0.1, top_k=5))
    assert h.fx.finished(shared) == [None] and h.fx.loads() == ["a"]


def _run_loaded(h: Harness) -> int:
    rid = _run(h, None)
    h.loaded("a")
    return rid


# ---------------------------------------------------------------------------------------- pure parts


def test_overrides_replace_only_what_is_set() -> None:
    wanted = LoadOverrides(max_context_len=1024, top_p=0.5, ignore_eos_token=True)
    load = leases.apply_overrides(A.load, wanted)
    assert (load.max_context_len, load.sampling.top_p, load.ignore_eos_token) == (1024, 0.5, True)
    assert load.sampling.top_k == A.load.sampling.top_k and load.n_keep == A.load.n_keep
    assert leases.apply_overrides(A.load, None) is A.load


@pytest.mark.parametrize("bad", [LoadOverrides(max_context_len=0), LoadOverrides(n_batch=9),
                                 LoadOverrides(enabled_cpus_mask=0x100), LoadOverrides(temperature=-1),
                                 LoadOverrides(base_domain_id=16)])
def test_out_of_range_overrides_are_invalid(bad: LoadOverrides) -> None:
    with pytest.raises(InvalidRequest):
        leases.apply_overrides(A.load, bad)


def test_context_and_domain_never_conflict() -> None:
    other = leases.apply_overrides(A.load, LoadOverrides(max_context_len=512, base_domain_id=3))
    assert leases.conflicts(A.load, other, frozenset()) == []


def test_a_larger_context_re_init_keeps_the_leases_parameters() -> None:
    h = Harness()
    _open(h, "L1", _with(A, n_keep=16, max_context_len=2048))
    rid = h.request(A)  # an HTTP request wanting the model's default 4096
    assert h.fx.stops() == ["a"]
    h.exited("a")
    assert (h.fx.load_params("a").n_keep, h.fx.load_params("a").max_context_len) == (16, 4096)
    h.loaded("a")
    assert h.fx.granted() == [rid] and h.s.leases == {"L1": "a"}
