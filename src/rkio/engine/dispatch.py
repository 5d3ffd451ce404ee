"""The scheduler's decision pass (rules 1-6 in ``rkio.engine.scheduler``), run after every event."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rkio.engine import leases, planner, sampling_groups
from rkio.engine.effects import GrantResult
from rkio.engine.ledger import ModelEntry, Running, Waiter
from rkio.engine.types import Loading, Queued
from rkio.errors import InsufficientMemory, InvalidRequest, QueueTimeout

if TYPE_CHECKING:
    from rkio.engine.scheduler import Scheduler


def dispatch(s: Scheduler, now: float) -> None:
    for waiter in [w for w in s.waiters.values() if w.deadline <= now]:  # (1)
        _timed_out(s, waiter)
    progress = True
    while progress:
        progress = _complete_loads(s) | _grant(s, now)  # (2), (3)
        progress |= _stop_idle(s, now)  # (4)
    _start_load(s, now)  # (5)
    _announce(s)  # (6)


def _ready(s: Scheduler, model: str) -> ModelEntry | None:
    entry = s.models.get(model)
    return entry if entry is not None and entry.state in ("idle", "busy") else None


def _complete_loads(s: Scheduler) -> bool:
    done = False
    for model, queue in s.queues.items():
        entry = _ready(s, model)
        if entry is None or entry.unload_requested:
            continue
        for waiter in [w for w in queue if w.kind == "load" and w.need_ctx <= entry.ctx]:
            if waiter.open_lease and _lease_conflict(s, entry, waiter):
                continue  # refused, or left queued for a re-init with its parameters (``_reinit``)
            s.drop(waiter)
            entry.keep_alive = s.keep_alive_for(waiter)
            if waiter.open_lease and waiter.lease is not None:
                s.leases[waiter.lease] = model
                s.lease_specs[model] = waiter.spec
            s.effects.finish(waiter.request_id, None)
            done = True
    return done


def _lease_conflict(s: Scheduler, entry: ModelEntry, waiter: Waiter) -> bool:
    """An open_lease whose load parameters the instance cannot serve: refused when another lease holds
    the instance, else it waits for the re-init ``_reinit`` starts."""
    names = leases.conflicts(entry.load, waiter.spec.load, entry.features) if entry.load else []
    if not names:
        return False
    if s._leases_on(entry.name):
        s.drop(waiter)
        s.effects.finish(waiter.request_id, InvalidRequest(
            f"{entry.name} is held by another lease loaded with other parameters "
            f"({', '.join(names)}); use the same parameters or wait until it is released"))
    return True


def _grant(s: Scheduler, now: float) -> bool:
    heads = sorted((q[0].seq, model) for model, q in s.queues.items() if q)
    granted = False
    for _, model in heads:
        entry = s.models.get(model)
        if entry is None or entry.state != "idle" or entry.unload_requested:
            continue
        queue = s.queues[model]
        while (waiter := s.kv.grantable(model, queue)) is not None:
            if model not in s.kv.owners:  # no lease owns the KV: sampling groups may pick (FIFO + overtakes)
                waiter = sampling_groups.grantable(queue, entry)
                if waiter is None:
                    break
            if waiter.kind != "generate" or waiter.need_ctx > entry.ctx:
                break
            if entry.npu and s.lanes_used >= s.config.npu_lanes:
                break
            load_s = entry.load_s if entry.loaded_at >= waiter.arrived else None
            result = s.effects.grant(waiter.request_id, model, entry.incarnation, load_s)
            if result is GrantResult.RUNNER_GONE:
                # the runner died before we heard (RunnerDied is on its way): the waiter keeps its place
                entry.state, entry.stop_reason = "stopping", "crashed"
                break
            sampling_groups.granted(queue, waiter)  # before the drop: the head may be the one overtaken
            s.drop(waiter)
            if result is GrantResult.CLIENT_GONE:
                continue  # the client left between queueing and now: it ended itself
            s.counters["granted"] += 1
            s.running[waiter.request_id] = Running(waiter.request_id, model, entry.incarnation, entry.npu,
                                                   waiter.lease, waiter.keep_history)
            s.lanes_used += entry.npu
            entry.state, entry.running = "busy", waiter.request_id
            entry.keep_alive = s.keep_alive_for(waiter)
            granted = True
            break
    return granted


def _stop_idle(s: Scheduler, now: float) -> bool:
    stopped = False
    for entry in list(s.models.values()):
        if entry.state != "idle":
            continue
        reason = None
        if s.shutting_down:
            reason = "shutdown"
        elif entry.unload_requested:
            s.counters["unloads"] += 1
            reason = "unload"
        elif (reinit := _reinit(s, entry)) is not None:
            if not reinit:
                stopped = True  # requests were rejected: the queue head changed
                continue
            s.counters["reinits"] += 1
            reason = "reinit"
        elif sampling_groups.reinit_for(s.queues.get(entry.name, ()), entry) is not None:
            s.counters["sampling_reinits"] += 1
            reason = "reinit (sampling)"
        elif (expiry := s._expiry(entry)) is not None and expiry <= now:
            s.counters["expirations"] += 1
            reason = "expired"
        if reason is not None:
            s.begin_stop(entry, reason)
            stopped = True
    return stopped


def _reinit(s: Scheduler, entry: ModelEntry) -> bool | None:
    """True: re-init; False: the larger-context requests were rejected; None: nothing to do.

    Re-init only an idle model whose queue head needs more context than loaded (FIFO, grow-only).

    The reload takes the largest context any queued request needs, so one re-init serves the whole queue
    and context never shrinks below a queued request's need. It must fit with this model's own memory
    freed; when it cannot, the requests that need the larger context are rejected and the model stays.
    """
    queue = s.queues.get(entry.name)
    if not queue or entry.name in s.kv.owners:
        return None  # a lease's kept history lives in this instance
    if _wants_own_init(s, entry, queue):
        return True
    if queue[0].need_ctx <= entry.ctx:
        return None
    ctx = max(w.need_ctx for w in queue)
    nbytes, _ = s.footprint(entry.spec, ctx)
    others = [_resident(s, e, queue[0].seq) for e in s.models.values() if e is not entry]
    need = planner.Need(entry.name, nbytes, entry.npu, entry.spec.base_domain_id)
    plan = planner.plan_admission(need, others, s.config.budget, s.config.reserved_domains)
    if isinstance(plan, planner.Reject):
        too_big = [w for w in queue if w.need_ctx > entry.ctx]
        for waiter in too_big:
            s.drop(waiter)
            s.counters["insufficient_memory"] += 1
            s.effects.finish(waiter.request_id, InsufficientMemory(f"context {ctx}: {plan.message}"))
        return False
    return True


def _wants_own_init(s: Scheduler, entry: ModelEntry, queue: Iterable[Waiter]) -> bool:
    """A queued open_lease asks for other load parameters and no lease holds the instance: re-init."""
    if entry.load is None or s._leases_on(entry.name):
        return False
    return any(w.open_lease and leases.conflicts(entry.load, w.spec.load, entry.features) for w in queue)


def _start_load(s: Scheduler, now: float) -> None:
    if s.shutting_down or any(e.state == "loading" for e in s.models.values()):
        return  # one load at a time
    candidates = sorted((q[0].seq, model) for model, q in s.queues.items() if q and model not in s.models)
    for seq, model in candidates:
        queue = s.queues[model]
        # a lease's load parameters (LoadOverrides) win, also across a re-init for a larger context:
        # the other requests do not ask for any; else the first sampling wish (sampling = "reinit")
        spec = next((w.spec for w in queue if w.open_lease), s.lease_specs.get(model)) \
            or sampling_groups.load_spec(queue)
        ctx = max(w.need_ctx for w in queue)
        nbytes, learned = s.footprint(spec, ctx)
        need = planner.Need(model, nbytes, spec.runtime == "rkllm", spec.base_domain_id)
        residents = [_resident(s, e, seq) for e in s.models.values()]
        plan = planner.plan_admission(need, residents, s.config.budget, s.config.reserved_domains)
        if isinstance(plan, planner.Admit):
            s.begin_load(spec, ctx, nbytes, learned, plan.base_domain, s.keep_alive_for(queue[0]), now)
            return
        if isinstance(plan, planner.Evict):
            for victim in plan.victims:
                s.counters["evictions"] += 1
                s.begin_stop(s.models[victim], f"evicted for {model}")
            return
        if isinstance(plan, planner.Wait):
            return  # strict FIFO: a younger load does not overtake a waiting older one
        s.insufficient(model, plan.message)


def _announce(s: Scheduler) -> None:
    for model, queue in s.queues.items():
        loading = (entry := s.models.get(model)) is not None and entry.state == "loading"
        for position, waiter in enumerate(queue):
            if loading and not waiter.told_loading:
                waiter.told_loading = True
                s.effects.notify(waiter.request_id, Loading(waiter.model))
            if waiter.kind == "generate" and worth_telling(waiter.position, position):
                waiter.position = position
                s.effects.notify(waiter.request_id, Queued(position))


EXACT_POSITIONS = 16


def worth_telling(told: int, position: int) -> bool:
    """Every move near the head of the queue; further back only when the position halved.

    Telling each of n waiters every step would cost n² messages as a long queue drains (1000 streaming
    clients: 500k SSE comments); this way a waiter hears O(log n + 16) updates.
    """
    if position == told:
        return False
    return told < 0 or position < EXACT_POSITIONS or position.bit_length() != told.bit_length()


def _timed_out(s: Scheduler, waiter: Waiter) -> None:
    s.counters["queue_timeouts"] += 1
    s.drop(waiter)
    s.effects.finish(waiter.request_id, QueueTimeout(
        f"waited {s.config.queue_timeout:g} s in the queue for {waiter.model}"))


def _resident(s: Scheduler, e: ModelEntry, before_seq: int) -> planner.Resident:
    """The planner's view of a runner; ``demand``: requests queued for it ahead of ``before_seq``."""
    demand = any(w.seq < before_seq for w in s.queues.get(e.name, ()))
    return planner.Resident(e.name, e.bytes, e.state, e.last_used, e.base_domain, e.spec.pinned,
                            s._leases_on(e.name), demand)
