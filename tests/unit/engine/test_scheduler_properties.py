"""Hypothesis stateful test: random event sequences keep the scheduler's and planner's invariants."""

from __future__ import annotations

from collections import Counter
from typing import Any

import hypothesis.strategies as st
from engine_fakes import FakeEffects, flat_footprint, spec
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rkio.engine import domains
from rkio.engine.effects import GrantResult
from rkio.engine.events import (
    Cancel,
    GenerationDone,
    LoadDone,
    LoadFailed,
    Request,
    RunnerDied,
    RunnerExited,
    RunnerKilled,
    Tick,
    TokenStall,
    Unload,
)
from rkio.engine.ledger import SchedulerConfig
from rkio.engine.runner.messages import RunnerExit
from rkio.engine.scheduler import Scheduler
from rkio.errors import LoadFailed as LoadFailedError
from rkio.runtime.base import Sampling
from rkio.units import GiB

WARM, COOL = Sampling(temperature=1.2), Sampling(temperature=0.2)
MODELS = [spec("a", 2 * GiB), spec("b", 3 * GiB), spec("c", 5 * GiB), spec("d", 1 * GiB, runtime="llamacpp"),
          spec("p", 1 * GiB, pinned=True), spec("e", 6 * GiB, base_domain_id=3)]
BUDGET = 9 * GiB
RESERVED = (1,)


class Recording(FakeEffects):
    """Also tracks runner processes: loading -> live -> stopping | dying | dead -> reaped (gone)."""

    def __init__(self) -> None:
        super().__init__()
        # (model, incarnation) -> loading | live | stopping (asked to) | dying (crashed under a generation,
        # reported by it) | dead (EOF seen by the shell, RunnerDied not yet handled) | heard (handled)
        self.processes: dict[tuple[str, int], str] = {}

    def grant(self, request_id: int, model: str, incarnation: int, load_s: float | None) -> GrantResult:
        result = super().grant(request_id, model, incarnation, load_s)
        if result is GrantResult.GRANTED:  # grants go only to live runners
            assert self.processes.get((model, incarnation)) == "live", (model, incarnation, self.processes)
        return result

    def start_load(self, model: str, incarnation: int, spec: Any, load: Any) -> None:
        super().start_load(model, incarnation, spec, load)
        self.processes[(model, incarnation)] = "loading"

    def stop_runner(self, model: str, incarnation: int, reason: str) -> None:
        super().stop_runner(model, incarnation, reason)
        state = self.processes[(model, incarnation)]
        assert state in ("live", "dead"), state  # never a stop for a runner it knows to be dead or dying
        if state == "live":
            self.processes[(model, incarnation)] = "stopping"


class SchedulerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fx = Recording()
        config = SchedulerConfig(budget=BUDGET, npu_lanes=1, max_queue=4, queue_timeout=100, keep_alive=30,
                                 reserved_domains=RESERVED)
        self.s = Scheduler(config, self.fx, flat_footprint)
        self.now = 0.0
        self.next_id = 0
        self.accepted: set[int] = set()
        self.done_posted: set[int] = set()

    def handle(self, event: Any) -> None:
        self.s.handle(event, self.now)

    @rule(model=st.sampled_from(MODELS), kind=st.sampled_from(["generate", "generate", "load"]),
          num_ctx=st.sampled_from([None, 2048, 8192]), keep_alive=st.sampled_from([None, 0, -1, 10]),
          sampling=st.sampled_from([None, WARM, COOL]))
    def request(self, model: Any, kind: str, num_ctx: int | None, keep_alive: float | None,
                sampling: Sampling | None) -> None:
        self.next_id += 1
        self.accepted.add(self.next_id)
        # a sampling wish (model.toml sampling = "reinit") may re-init an idle model: the invariants hold
        wish = sampling if kind == "generate" else None
        self.handle(Request(self.next_id, model, kind, num_ctx, keep_alive,  # type: ignore[arg-type]
                            sampling=wish))

    @precondition(lambda self: bool(self.s.waiters))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        rid = data.draw(st.sampled_from(sorted(self.s.waiters)))
        self.accepted.discard(rid)  # the client ended it itself
        self.handle(Cancel(rid))

    def _processes(self, state: str) -> list[tuple[str, int]]:
        return sorted(k for k, v in self.fx.processes.items() if v == state)

    @precondition(lambda self: bool(self._processes("loading")))
    @rule(data=st.data(), ok=st.booleans(), crashed=st.booleans())
    def finish_load(self, data: st.DataObject, ok: bool, crashed: bool) -> None:
        model, inc = data.draw(st.sampled_from(self._processes("loading")))
        if ok:
            self.fx.processes[(model, inc)] = "live"
            self.handle(LoadDone(model, inc, 1, None))
        else:
            del self.fx.processes[(model, inc)]
            self.handle(LoadFailed(model, inc, LoadFailedError("E rkllm: no"), crashed))

    @precondition(lambda self: bool(set(self.s.running) - self.done_posted))
    @rule(data=st.data(), outcome=st.sampled_from(["ok", "error", "cancelled", "crashed"]))
    def generation_done(self, data: st.DataObject, outcome: str) -> None:
        rid = data.draw(st.sampled_from(sorted(set(self.s.running) - self.done_posted)))
        run = self.s.running[rid]
        key = (run.model, run.incarnation)
        if outcome == "crashed" and self.fx.processes.get(key) in ("live", "stopping"):
            self.fx.processes[key] = "dying"
        elif outcome == "crashed":
            outcome = "error"
        self.done_posted.add(rid)
        self.handle(GenerationDone(rid, outcome))  # type: ignore[arg-type]

    @precondition(lambda self: bool(self.s.running))
    @rule(data=st.data(), first=st.booleans())
    def stall(self, data: st.DataObject, first: bool) -> None:
        self.handle(TokenStall(data.draw(st.sampled_from(sorted(self.s.running))), first))

    def _reapable(self) -> list[tuple[str, int]]:
        return sorted(k for k, v in self.fx.processes.items() if v in ("stopping", "dying", "dead", "heard"))

    @precondition(lambda self: bool(self._reapable()))
    @rule(data=st.data())
    def reaped(self, data: st.DataObject) -> None:
        model, inc = data.draw(st.sampled_from(self._reapable()))
        self._reap(model, inc)

    def _reap(self, model: str, inc: int) -> None:
        del self.fx.processes[(model, inc)]
        self.fx.dead.discard((model, inc))
        self.handle(RunnerExited(model, inc, RunnerExit(0, None, "stop", None)))

    @precondition(lambda self: bool(self._processes("live") + self._processes("stopping")))
    @rule(data=st.data(), heard=st.booleans())
    def eof(self, data: st.DataObject, heard: bool) -> None:
        """The runner's pipe closes (it died or exited); the scheduler hears of it now or later."""
        model, inc = data.draw(st.sampled_from(self._processes("live") + self._processes("stopping")))
        self.fx.processes[(model, inc)] = "dead"
        self.fx.dead.add((model, inc))
        if heard:
            self.fx.processes[(model, inc)] = "heard"
            self.handle(RunnerDied(model, inc))

    @precondition(lambda self: bool(self._processes("live")))
    @rule(data=st.data())
    def request_meets_a_fresh_death(self, data: st.DataObject) -> None:
        """The race of the review: a request arrives after the runner's EOF, before RunnerDied."""
        model, inc = data.draw(st.sampled_from(self._processes("live")))
        self.fx.processes[(model, inc)] = "dead"
        self.fx.dead.add((model, inc))
        self.next_id += 1
        self.accepted.add(self.next_id)
        self.handle(Request(self.next_id, next(m for m in MODELS if m.name == model)))

    @precondition(lambda self: bool(self._processes("dead")))
    @rule(data=st.data())
    def hear_death(self, data: st.DataObject) -> None:
        model, inc = data.draw(st.sampled_from(self._processes("dead")))
        self.fx.processes[(model, inc)] = "heard"
        self.handle(RunnerDied(model, inc))

    @precondition(lambda self: any(self.fx.processes.get((r.model, r.incarnation)) == "live"
                                   for r in self.s.running.values()))
    @rule(data=st.data())
    def kill_hung(self, data: st.DataObject) -> None:
        """The shell kills a runner whose runtime ignored an abort, then the generation ends as killed."""
        rid = data.draw(st.sampled_from(sorted(
            rid for rid, r in self.s.running.items()
            if self.fx.processes.get((r.model, r.incarnation)) == "live" and rid not in self.done_posted)))
        run = self.s.running[rid]
        crashes = self.s.counters["crashes"]
        self.handle(RunnerKilled(run.model, run.incarnation, "abort timeout"))
        self.fx.processes[(run.model, run.incarnation)] = "heard"
        self.fx.dead.add((run.model, run.incarnation))
        self.done_posted.add(rid)
        self.handle(GenerationDone(rid, "killed"))
        self.handle(RunnerDied(run.model, run.incarnation))
        self._reap(run.model, run.incarnation)
        assert self.s.counters["crashes"] == crashes  # our own kill is never a crash

    @precondition(lambda self: bool(self._processes("live")))
    @rule(data=st.data())
    def crash_while_idle(self, data: st.DataObject) -> None:
        model, inc = data.draw(st.sampled_from(self._processes("live")))
        entry = self.s.models.get(model)
        if entry is not None and entry.running is not None:
            return  # crashes under a generation are covered by generation_done("crashed")
        del self.fx.processes[(model, inc)]
        self.handle(RunnerExited(model, inc, RunnerExit(None, 11, "idle", None)))

    @rule(model=st.sampled_from(MODELS))
    def unload(self, model: Any) -> None:
        self.next_id += 1
        self.accepted.add(self.next_id)
        self.handle(Unload(self.next_id, model.name))

    @rule(seconds=st.sampled_from([1.0, 15.0, 40.0, 120.0]))
    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.handle(Tick())

    # ------------------------------------------------------------------------------- invariants

    @invariant()
    def never_over_budget(self) -> None:
        assert sum(e.bytes for e in self.s.models.values()) <= BUDGET

    @invariant()
    def no_domain_overflow(self) -> None:
        placed = [(e.base_domain, e.bytes) for e in self.s.models.values() if e.base_domain is not None]
        assert all(used <= domains.WINDOW_BYTES for used in domains.occupancy(placed))
        for base, nbytes in placed:
            assert not set(domains.span(base, nbytes)) & set(RESERVED)

    @invariant()
    def lanes_and_one_generation_per_runner(self) -> None:
        assert 0 <= self.s.lanes_used <= 1
        assert self.s.lanes_used == sum(r.lane for r in self.s.running.values())
        per_runner = Counter((r.model, r.incarnation) for r in self.s.running.values())
        assert all(n == 1 for n in per_runner.values())
        assert self.s.queued() <= 4

    @invariant()
    def every_request_ends_at_most_once_and_pending_ones_are_tracked(self) -> None:
        granted = Counter(self.fx.granted())
        finished = Counter(c[1] for c in self.fx.of("finish"))
        for rid in self.accepted:
            ends = granted[rid] + finished[rid]
            assert ends <= 1, (rid, self.fx.calls)
            if ends == 0:  # still pending, and never beyond its queue deadline
                assert rid not in self.s.waiters or self.s.waiters[rid].deadline > self.now
                assert rid in self.s.waiters or any(rid in e.unload_waiters for e in self.s.models.values())

    def teardown(self) -> None:
        """Let everything finish (loads succeed, generations end, runners are reaped, deadlines pass):
        then every request the clients did not withdraw has ended exactly once."""
        for _ in range(500):
            before = len(self.fx.calls)
            for model, inc in self._processes("loading"):
                self.fx.processes[(model, inc)] = "live"
                self.handle(LoadDone(model, inc, 1, None))
            for rid in sorted(set(self.s.running) - self.done_posted):
                self.done_posted.add(rid)
                self.handle(GenerationDone(rid, "ok"))
            for model, inc in self._reapable():
                self._reap(model, inc)
            self.now += 500.0
            self.handle(Tick())
            if len(self.fx.calls) == before and not self.s.running and not self._reapable():
                break
        assert not self.s.waiters and not self.s.running
        granted = Counter(self.fx.granted())
        finished = Counter(c[1] for c in self.fx.of("finish"))
        for rid in self.accepted:
            assert granted[rid] + finished[rid] == 1, (rid, granted[rid], finished[rid])

    @invariant()
    def an_idle_model_never_sits_on_a_queue_it_could_serve(self) -> None:
        # after every dispatch: granted, or stopping for a (context or sampling) re-init, or no lane free
        for name, e in self.s.models.items():
            queue = self.s.queues.get(name)
            if self.s.shutting_down or e.state != "idle" or e.unload_requested or not queue:
                continue
            if queue[0].kind != "generate" or (e.npu and self.s.lanes_used >= 1):
                continue
            raise AssertionError((name, list(queue), self.fx.calls[-5:]))

    @invariant()
    def no_leaked_runners(self) -> None:
        tracked = {(m, e.incarnation) for m, e in self.s.models.items()}
        alive = {k for k, v in self.fx.processes.items()}
        assert tracked == alive, (tracked, alive)


SchedulerMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TestScheduler = SchedulerMachine.TestCase
