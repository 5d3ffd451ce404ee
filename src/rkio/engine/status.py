"""The scheduler's state as an ``EngineStatus`` (pure: monotonic times converted with a given offset)."""

from __future__ import annotations

from rkio.engine.domains import span
from rkio.engine.run_plan import per_request_sampling
from rkio.engine.scheduler import Scheduler
from rkio.engine.types import Cooldown, EngineStatus, LoadedModel


def snapshot(s: Scheduler, now: float, wall_offset: float) -> EngineStatus:
    """``wall_offset`` = time.time() - monotonic now, to report wall-clock timestamps."""
    loaded = []
    for e in sorted(s.models.values(), key=lambda e: e.name):
        expiry = s._expiry(e)
        domains = span(e.base_domain, e.bytes) if e.base_domain is not None else ()
        loaded.append(LoadedModel(
            name=e.name, runtime=e.spec.runtime, state=e.state, pid=e.pid, bytes=e.bytes, rss_bytes=e.rss,
            domains=domains, max_context_len=e.ctx, loaded_at=e.loaded_at + wall_offset,
            last_used=e.last_used + wall_offset,
            expires_at=None if expiry is None else expiry + wall_offset,
            queue_length=len(s.queues.get(e.name, ())), pinned=e.spec.pinned, leases=s._leases_on(e.name),
            sampling=(e.load or e.spec.load).sampling,
            per_request_sampling=per_request_sampling(e.spec, e.features or None),
            sampling_policy=e.spec.sampling_policy))
    used = sum(e.bytes for e in s.models.values())
    cooldowns = tuple(
        Cooldown(model, r.until + wall_offset, r.reason, r.failures)
        for model, r in sorted(s.failures.items()) if r.cooling(now) > 0)
    return EngineStatus(
        loaded=tuple(loaded), budget_bytes=s.config.budget, used_bytes=used,
        free_bytes=s.config.budget - used, queue_length=s.queued(), running=len(s.running),
        npu_lanes=s.config.npu_lanes, cooldowns=cooldowns, quarantined=tuple(sorted(s.quarantined)),
        counters=dict(s.counters))
