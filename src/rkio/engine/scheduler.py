"""The scheduler: a pure, synchronous state machine over models, queues and NPU lanes.

Events come in through ``handle(event, now)``; decisions go out through ``Effects``. It never awaits,
never reads a clock and holds no process: the asyncio shell owns it, drains one event queue into it, and
executes the effects. Every handler ends in ``_dispatch``, which applies these rules in order:

1. Expire waiters whose queue deadline passed (QueueTimeout).
2. Complete ``load`` requests whose model is ready with a large enough context.
3. Grant generations: ready idle models whose queue head fits their loaded context, oldest head first;
   an NPU model also needs a free lane (``npu_lanes``), a CPU model only its own idle runner.
   A model being loaded never holds up another model's grants.
4. Stop idle runners that must go: shutdown, explicit unload, keep-alive expired (0 = right after the
   request), or a re-init (the queue head needs a larger context than loaded; see ``_needs_reinit``).
5. Start at most one load: the model whose oldest waiter arrived first, with the largest context any of
   its waiters needs, placed by the memory planner (admit / evict idle LRU / wait / reject).
6. Tell waiters their queue position and that their model is loading, when that changed.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import replace
from typing import assert_never

from rkio.engine.dispatch import dispatch
from rkio.engine.effects import Effects
from rkio.engine.events import (
    Cancel,
    CloseLease,
    Event,
    GenerationDone,
    LoadDone,
    LoadFailed,
    Request,
    RunnerDied,
    RunnerExited,
    RunnerKilled,
    Shutdown,
    Tick,
    TokenStall,
    Unload,
)
from rkio.engine.kv_exclusive import KvExclusivity
from rkio.engine.ledger import FootprintFn, ModelEntry, Running, SchedulerConfig, Waiter
from rkio.engine.lifecycle import FailureRecord, effective_keep_alive
from rkio.engine.types import ModelSpec
from rkio.errors import (
    Busy,
    GenerationTimeout,
    InsufficientMemory,
    InvalidRequest,
    ModelQuarantined,
    RkioError,
    RunnerCrashed,
    ShuttingDown,
)
from rkio.errors import (
    LoadFailed as LoadFailedError,
)

COUNTERS = ("requests", "granted", "completed", "failed", "cancelled", "rejected_busy", "queue_timeouts",
            "loads", "load_failures", "evictions", "expirations", "unloads", "reinits", "crashes", "stalls",
            "quarantines", "insufficient_memory", "kills", "sampling_reinits")


class Scheduler:
    """Owns every scheduling decision. Not thread-safe by design: one task calls it."""

    def __init__(self, config: SchedulerConfig, effects: Effects, footprint: FootprintFn) -> None:
        self.config = config
        self.effects = effects
        self.footprint = footprint
        self.models: dict[str, ModelEntry] = {}
        self.queues: dict[str, deque[Waiter]] = {}
        self.waiters: dict[int, Waiter] = {}
        self.running: dict[int, Running] = {}
        self.leases: dict[str, str] = {}  # lease id -> model
        self.dead_leases: dict[str, str] = {}  # lease id -> why (its runner crashed)
        self.lease_specs: dict[str, ModelSpec] = {}  # model -> the spec (load overrides) its leases hold
        self.kv = KvExclusivity()
        self.failures: dict[str, FailureRecord] = {}
        self.quarantined: dict[str, str] = {}  # model -> why
        self.lanes_used = 0
        self.shutting_down = False
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._seq = itertools.count()
        self._incarnations = itertools.count(1)

    # ------------------------------------------------------------------------------------------ events

    def handle(self, event: Event, now: float) -> None:
        """Apply one event, then dispatch."""
        match event:
            case Request():
                self.on_request(event, now)
            case Cancel():
                self.on_cancel(event, now)
            case LoadDone():
                self.on_load_done(event, now)
            case LoadFailed():
                self.on_load_failed(event, now)
            case GenerationDone():
                self.on_generation_done(event, now)
            case RunnerDied():
                self.on_runner_died(event, now)
            case RunnerKilled():
                self.on_runner_killed(event, now)
            case TokenStall():
                self.on_token_stall(event, now)
            case RunnerExited():
                self.on_runner_exited(event, now)
            case Unload():
                self.on_unload(event, now)
            case CloseLease():
                self.on_close_lease(event, now)
            case Tick():
                pass  # nothing to record: ``_dispatch`` applies every deadline that has passed
            case Shutdown():
                self.on_shutdown(event, now)
            case _:
                assert_never(event)
        self._dispatch(now)

    def on_request(self, ev: Request, now: float) -> None:
        self.counters["requests"] += 1
        spec, rid = ev.spec, ev.request_id
        entry = self.models.get(spec.name)
        record = self.failures.get(spec.name)
        if self.shutting_down:
            return self.effects.finish(rid, ShuttingDown("the server is shutting down"))
        if spec.name in self.quarantined:
            return self.effects.finish(rid, ModelQuarantined(self.quarantined[spec.name]))
        if record and record.cooling(now) and (entry is None or entry.state == "stopping"):
            return self.effects.finish(rid, LoadFailedError(
                f"{spec.name} failed to load {record.failures} time(s), retrying later: {record.reason}",
                retry_after=record.cooling(now)))
        if ev.lease is not None and ev.lease in self.dead_leases:
            return self.effects.finish(rid, RunnerCrashed(self.dead_leases[ev.lease]))
        if ev.lease is not None and not ev.open_lease and self.leases.get(ev.lease) != spec.name:
            return self.effects.finish(rid, InvalidRequest(f"lease {ev.lease!r} is not held on {spec.name}"))
        if ev.kind == "generate" and self.queued() >= self.config.max_queue:
            self.counters["rejected_busy"] += 1
            full = f"the request queue is full ({self.config.max_queue} waiting)"
            return self.effects.finish(rid, Busy(full, retry_after=self._retry_after()))
        waiter = Waiter(rid, spec, ev.kind, _need_ctx(spec, ev.num_ctx), ev.keep_alive, now,
                        now + self.config.queue_timeout, next(self._seq), ev.lease, ev.open_lease,
                        keep_history=ev.keep_history, sampling=ev.sampling)
        self.waiters[rid] = waiter
        self.queues.setdefault(spec.name, deque()).append(waiter)

    def on_cancel(self, ev: Cancel, now: float) -> None:
        """The client left before its grant: forget its waiter (a granted one ends by GenerationDone)."""
        waiter = self.waiters.get(ev.request_id)
        if waiter is not None:
            self.counters["cancelled"] += 1
            self.drop(waiter)

    def on_load_done(self, ev: LoadDone, now: float) -> None:
        entry = self._entry(ev.model, ev.incarnation)
        if entry is None:
            return
        self.counters["loads"] += 1
        entry.state, entry.pid, entry.loaded_at, entry.last_used = "idle", ev.pid, now, now
        entry.features = ev.features
        entry.load_s = now - entry.load_started
        entry.measured(ev.memory, settled=False)
        record = self.failures.get(ev.model)
        if record is not None:
            record.loaded()  # the cooldown ends; the crash history (quarantine) does not

    def on_load_failed(self, ev: LoadFailed, now: float) -> None:
        entry = self._entry(ev.model, ev.incarnation)
        if entry is None:
            return
        del self.models[ev.model]
        for rid in entry.unload_waiters:
            self.effects.finish(rid, None)  # nothing to unload any more
        self.counters["load_failures"] += 1
        record = self.failures.setdefault(ev.model, FailureRecord())
        wait = record.load_failed(now, ev.error.message)
        if ev.crashed:
            self._crashed(ev.model, now, ev.error.message)
        error = (ModelQuarantined(self.quarantined[ev.model]) if ev.model in self.quarantined
                 else LoadFailedError(ev.error.message, retry_after=wait))
        self._reject_all(ev.model, error)

    def on_generation_done(self, ev: GenerationDone, now: float) -> None:
        """A granted generation is over and the runtime no longer runs it: its lane is free again.

        The shell posts this only once the runtime returned (abort acknowledged) or the runner is dead.
        A runner that died or was killed under it stays ``stopping`` until reaped; nothing is granted to it.
        """
        run = self.running.pop(ev.request_id, None)
        if run is None:
            raise RuntimeError(f"generation {ev.request_id} ended but was never granted")
        if run.lane:
            self.lanes_used -= 1
        key = {"ok": "completed", "cancelled": "cancelled", "killed": "cancelled"}.get(ev.outcome, "failed")
        self.counters[key] += 1
        self.kv.run_ended(run.model, run.lease, run.keep_history, ev.outcome == "ok")
        if ev.outcome == "crashed":
            self._leases_died(run.model, f"the runner of {run.model} crashed; the lease is gone")
        entry = self._entry(run.model, run.incarnation)
        if entry is not None and entry.running == ev.request_id:
            entry.running, entry.last_used = None, now
            entry.measured(ev.memory, settled=True)
            if entry.state == "stopping":
                return  # died, killed or being stopped meanwhile: its stop reason stands
            if ev.outcome in ("crashed", "killed"):  # dead but not reaped: its memory counts
                entry.state = "stopping"
                entry.stop_reason = "crashed" if ev.outcome == "crashed" else "killed"
            elif entry.state == "busy":
                entry.state = "idle"

    def on_runner_died(self, ev: RunnerDied, now: float) -> None:
        """EOF on the runner's frames: it is gone. Unless we were stopping it, that is a crash."""
        entry = self._entry(ev.model, ev.incarnation)
        if entry is None or entry.state == "stopping":
            return
        entry.state, entry.stop_reason = "stopping", "crashed"

    def on_runner_killed(self, ev: RunnerKilled, now: float) -> None:
        """rkio kills this runner itself: not a crash of the model, and nothing more is granted to it."""
        entry = self._entry(ev.model, ev.incarnation)
        if entry is None:
            return
        self.counters["kills"] += 1
        if entry.state != "stopping" or entry.stop_reason == "crashed":
            entry.state, entry.stop_reason = "stopping", f"killed: {ev.reason}"

    def on_token_stall(self, ev: TokenStall, now: float) -> None:
        run = self.running.get(ev.request_id)
        if run is None:
            return
        self.counters["stalls"] += 1
        what = "no first token" if ev.first_token else "no token"
        self.effects.abort(ev.request_id, GenerationTimeout(
            f"{run.model} produced {what} within the deadline; generation aborted"))

    def on_runner_exited(self, ev: RunnerExited, now: float) -> None:
        entry = self._entry(ev.model, ev.incarnation)
        if entry is None:
            return
        del self.models[ev.model]
        self.kv.model_gone(ev.model)
        for rid in entry.unload_waiters:
            self.effects.finish(rid, None)
        if entry.state == "stopping" and entry.stop_reason != "crashed":
            if (entry.stop_reason or "").startswith("killed"):  # its handle is gone all the same
                self._leases_died(ev.model, ev.exit.describe(ev.model))
            return  # we stopped or killed it ourselves: not a crash
        self._leases_died(ev.model, ev.exit.describe(ev.model))
        self._crashed(ev.model, now, ev.exit.describe(ev.model))

    def on_unload(self, ev: Unload, now: float) -> None:
        # An explicit unload is also the operator's reset: it lifts a quarantine and a load cooldown.
        self.quarantined.pop(ev.model, None)
        self.failures.pop(ev.model, None)
        entry = self.models.get(ev.model)
        if entry is None:
            return self.effects.finish(ev.request_id, None)
        held = self._leases_on(ev.model)
        if held:
            return self.effects.finish(ev.request_id, InvalidRequest(
                f"{ev.model} is held by {held} lease(s); close them first"))
        entry.unload_requested = True
        entry.unload_waiters.append(ev.request_id)

    def on_close_lease(self, ev: CloseLease, now: float) -> None:
        self.kv.lease_ended(ev.lease)
        self.dead_leases.pop(ev.lease, None)
        model = self.leases.pop(ev.lease, None)
        if model is not None and not self._leases_on(model):
            self.lease_specs.pop(model, None)
        entry = self.models.get(model) if model else None
        if entry is not None:
            entry.last_used = now

    def on_shutdown(self, ev: Shutdown, now: float) -> None:
        self.shutting_down = True
        for model in list(self.queues):
            self._reject_all(model, ShuttingDown("the server is shutting down"))
        if ev.abort:
            for rid in list(self.running):
                self.effects.abort(rid, ShuttingDown("the server stopped before the generation finished"))

    # ------------------------------------------------------------------------------------------ queries

    def queued(self) -> int:
        """Generations waiting (the figure ``max_queue`` bounds)."""
        return sum(1 for w in self.waiters.values() if w.kind == "generate")

    def next_deadline(self) -> float | None:
        """The earliest time a ``Tick`` has something to do (queue deadline or keep-alive expiry)."""
        times = [w.deadline for w in self.waiters.values()]
        times += [t for e in self.models.values() if (t := self._expiry(e)) is not None]
        return min(times, default=None)

    def idle(self) -> bool:
        """Nothing running, loading, stopping or resident (shutdown is complete once this holds)."""
        return not self.running and not self.models

    def _expiry(self, e: ModelEntry) -> float | None:
        if e.state != "idle" or e.running is not None or self.queues.get(e.name) or e.spec.pinned:
            return None
        if e.keep_alive < 0 or self._leases_on(e.name):
            return None
        return e.last_used + e.keep_alive

    def _leases_on(self, model: str) -> int:
        return sum(1 for m in self.leases.values() if m == model)

    def _entry(self, model: str, incarnation: int) -> ModelEntry | None:
        entry = self.models.get(model)
        return entry if entry is not None and entry.incarnation == incarnation else None

    def _retry_after(self) -> float:
        return float(max(1, min(60, self.queued() // max(1, self.config.npu_lanes))))

    # ------------------------------------------------------------------------------------------ helpers

    def drop(self, waiter: Waiter) -> None:
        """Remove a waiter from its queue and the index (the one place both are kept in step)."""
        del self.waiters[waiter.request_id]
        self.queues[waiter.model].remove(waiter)

    def _reject_all(self, model: str, error: RkioError) -> None:
        for waiter in list(self.queues.get(model, ())):
            self.drop(waiter)
            self.effects.finish(waiter.request_id, error)

    def _leases_died(self, model: str, why: str) -> None:
        """A crashed runner takes its leases' handle state with it: their next calls get RunnerCrashed."""
        for lease in [lease for lease, m in self.leases.items() if m == model]:
            del self.leases[lease]
            self.dead_leases[lease] = why
            self.kv.lease_ended(lease)
        self.lease_specs.pop(model, None)

    def _crashed(self, model: str, now: float, why: str) -> None:
        self.counters["crashes"] += 1
        if self.failures.setdefault(model, FailureRecord()).crashed(now) and model not in self.quarantined:
            self.counters["quarantines"] += 1
            self.quarantined[model] = (f"{model} is quarantined after repeated crashes (last: {why}); "
                                       f"unload it (rkio unload {model}) to try again")
            self._reject_all(model, ModelQuarantined(self.quarantined[model]))

    def _dispatch(self, now: float) -> None:
        dispatch(self, now)

    def begin_stop(self, entry: ModelEntry, reason: str) -> None:
        """Begin stopping a runner; its memory stays counted until ``RunnerExited``."""
        entry.state, entry.stop_reason = "stopping", reason
        self.effects.stop_runner(entry.name, entry.incarnation, reason)

    def begin_load(self, spec: ModelSpec, ctx: int, nbytes: int, learned: bool, base: int | None,
                   keep_alive: float, now: float) -> None:
        incarnation = next(self._incarnations)
        self.models[spec.name] = ModelEntry(spec, incarnation, "loading", ctx, nbytes, learned, base,
                                            keep_alive, now)
        load = replace(spec.load, max_context_len=ctx,
                       base_domain_id=base if base is not None else spec.load.base_domain_id)
        self.models[spec.name].load = load
        self.effects.start_load(spec.name, incarnation, spec, load)

    def keep_alive_for(self, waiter: Waiter) -> float:
        return effective_keep_alive(waiter.keep_alive, waiter.spec.keep_alive, self.config.keep_alive)

    def insufficient(self, model: str, message: str) -> None:
        self.counters["insufficient_memory"] += 1
        self._reject_all(model, InsufficientMemory(message))


def _need_ctx(spec: ModelSpec, num_ctx: int | None) -> int:
    ctx = num_ctx if num_ctx is not None and num_ctx > 0 else spec.load.max_context_len
    return min(ctx, spec.max_context_limit) if spec.max_context_limit else ctx

