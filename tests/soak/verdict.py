"""The soak's pass criteria and its summary: counts of how requests ended, recovery times after crashes, the
simulator's overcommit and NPU-overlap counters (with the request whose run held the NPU), the
gateway's RSS, and what survived its shutdown."""

from __future__ import annotations

import collections
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos import CrashEvent
from gateway import HEALTHY
from traffic import Outcome

RSS_SLACK = 64 * 1024 * 1024  # "back near baseline": allocator and import caches may keep a little


@dataclass
class Shutdown:
    signal: str
    runners: int  # runner processes alive when the signal was sent
    exit_status: int | None  # None: did not exit in time
    seconds: float  # until the gateway and everything it started were gone
    processes_left: list[int]
    reservations_left: int
    jobs_left: int


@dataclass
class Settled:
    """The engine a few seconds after the traffic stopped (GET /rkio/status and the simulator's records)."""

    queued: int
    running: int
    leases: int
    foreign_reservations: list[int]  # pids holding NPU memory that the engine does not list as its runners
    runs_inside: list[int]  # pids still inside rkllm_run


@dataclass
class Findings:
    planned: int
    outcomes: list[Outcome]
    events: list[CrashEvent]
    overcommits: int
    overlaps: int
    overlap_log: list[dict[str, Any]]
    npu_jobs: int
    baseline_rss: int
    end_rss: int
    settled: Settled
    shutdowns: list[Shutdown] = field(default_factory=list)
    at_sigterm: list[Outcome] = field(default_factory=list)  # the requests in flight when SIGTERM came
    log_tracebacks: int = 0


def recovery_times(findings: Findings) -> tuple[list[float], int]:
    """Seconds from each crash event to the first complete answer of that model that started after it, and
    how many events were never followed by one (while later requests for the model existed)."""
    times: list[float] = []
    unrecovered = 0
    for event in findings.events:
        later = [o for o in findings.outcomes if o.plan.model == event.model and o.started >= event.time]
        ok = [o.ended for o in later if o.ending == "complete"]
        if ok:
            times.append(min(ok) - event.time)
        elif later:
            unrecovered += 1
    return times, unrecovered


def condition(o: Outcome) -> str:
    """What the soak did to a request: its armed fault, a hang-up, or nothing."""
    if o.plan.fault:
        what = o.plan.fault.split(":")[0]
        return what + (" + hang-up" if o.plan.hangup_at is not None else "")
    return "hang-up" if o.plan.disconnect_after is not None else "none"


def by_tag(f: Findings, tag: str) -> Outcome | None:
    """The request whose prompt starts with ``tag`` (the simulator records each run's first prompt word)."""
    return next((o for o in f.outcomes if o.plan.content.split()[0] == tag), None)


def criteria(f: Findings) -> list[tuple[str, bool, str]]:
    """(criterion, passed, the measured value)."""
    ends = collections.Counter(o.ending for o in f.outcomes)
    answered = collections.Counter(o.plan.model for o in f.outcomes
                                   if o.ending == "complete" and o.plan.model in HEALTHY)
    _, unrecovered = recovery_times(f)
    s = f.settled
    checks = [
        ("every request ended exactly once", len(f.outcomes) == f.planned,
         f"{len(f.outcomes)} outcomes for {f.planned} requests"),
        ("each ended with the exact answer, a protocol-shaped error or the client's own hang-up",
         ends["violation"] == 0, f"{ends['violation']} violations"),
        ("none outlived its deadline", ends["overran"] == 0, f"{ends['overran']} overran"),
        ("0 overcommits", f.overcommits == 0, f"{f.overcommits} overcommits"),
        ("0 NPU run overlaps (npu_lanes=1)", f.overlaps == 0, f"{f.overlaps} overlaps in {f.npu_jobs} runs"),
        ("every healthy model answered", all(answered[m] > 0 for m in HEALTHY), str(dict(answered))),
        ("every crashed model recovered", unrecovered == 0,
         f"{unrecovered} crash events without a later answer"),
        ("idle once the traffic stopped: nothing queued, running or leased; no memory or NPU run the "
         "engine does not know", not (s.queued or s.running or s.leases or s.foreign_reservations
                                      or s.runs_inside),
         f"queued {s.queued}, running {s.running}, leases {s.leases}, reservations of other pids "
         f"{s.foreign_reservations}, pids inside rkllm_run {s.runs_inside}"),
        ("gateway RSS back near baseline", f.end_rss <= f.baseline_rss + RSS_SLACK,
         f"{f.baseline_rss / 2**20:.0f} MiB -> {f.end_rss / 2**20:.0f} MiB"),
    ]
    for d in f.shutdowns:
        left = not (d.processes_left or d.reservations_left or d.jobs_left)
        checks.append((f"nothing left after {d.signal} of the gateway", left and d.exit_status is not None,
                       f"{d.runners} runners; exit {d.exit_status}, all gone in {d.seconds:.1f} s; left: "
                       f"processes {d.processes_left}, reservations {d.reservations_left}, "
                       f"runs in the runtime {d.jobs_left}"))
    return checks


def _shape(message: str) -> str:
    """An error message with its numbers and request words blanked, to group like with like."""
    return re.sub(r"\d+(\.\d+)?", "N", re.sub(r"r\d+[abc]", "rN", message))[:110]


def _counts(counter: collections.Counter[tuple[str, str]]) -> str:
    return ", ".join(f"{a}/{e} {n}" for (a, e), n in sorted(counter.items()))


def _overlaps(f: Findings) -> list[str]:
    lines = [f"sim: {f.npu_jobs} NPU runs, {f.overlaps} overlaps, {f.overcommits} overcommits"]
    causes: collections.Counter[str] = collections.Counter()
    for i, overlap in enumerate(f.overlap_log):
        run, inside = overlap["run"], overlap.get("inside", {})
        held = by_tag(f, inside.get("tag", ""))
        cause = f"{condition(held)}, {held.ending}" if held else f"{inside.get('tag')!r}, not a soak request"
        causes[cause] += 1
        if i < 5:
            seconds = (run["time_ms"] - inside.get("time_ms", 0)) / 1000
            lines.append(f"  {Path(run['model']).parent.name} (pid {run['pid']}, {run['tag']}) entered while "
                         f"{Path(inside.get('model', '')).parent.name} (pid {inside.get('pid')}, "
                         f"{inside.get('tag')}, in for {seconds:.2f} s) was inside; that request: {cause}")
    if causes:
        lines.append(f"  runs inside at the first {len(f.overlap_log)}, by request: {dict(causes)}")
    return lines


def report(f: Findings) -> tuple[bool, str]:
    """(passed, the printable summary)."""
    lines = ["== soak summary =="]
    ends = collections.Counter(o.ending for o in f.outcomes)
    lines.append(f"requests {f.planned}: " + ", ".join(f"{k} {v}" for k, v in sorted(ends.items())))
    lines.append("by API: " + _counts(collections.Counter((o.plan.api, o.ending) for o in f.outcomes)))
    lines.append("healthy models, by what was done: " + _counts(collections.Counter(
        (condition(o), o.ending) for o in f.outcomes if o.plan.model in HEALTHY)))
    errors = collections.Counter(f"{o.plan.model if o.plan.model not in HEALTHY else 'healthy'}: "
                                 f"{_shape(o.detail)}" for o in f.outcomes if o.ending == "error")
    lines.append("errors:")
    lines += [f"  {n:4d} x {msg}" for msg, n in errors.most_common(14)]
    bad = [o for o in f.outcomes if o.ending in ("violation", "overran")]
    if bad:
        lines.append("violations / overruns (first 15):")
        lines += [f"  #{o.plan.rid} {o.plan.model} {o.plan.api} {condition(o)}: {o.ending}: {o.detail}"
                  for o in bad[:15]]
    lines.append(f"crash events: {dict(collections.Counter(e.kind for e in f.events))}")
    times, unrecovered = recovery_times(f)
    if times:
        lines.append(f"recovery to the next complete answer: median {statistics.median(times):.2f} s, "
                     f"max {max(times):.2f} s over {len(times)} events ({unrecovered} unrecovered)")
    lines += _overlaps(f)
    lines += [f"in flight at SIGTERM: #{o.plan.rid} {o.plan.model} {o.plan.api} {condition(o)}: {o.ending} "
              f"after {o.ended - o.started:.1f} s {o.detail[:90]}" for o in f.at_sigterm]
    lines.append(f"tracebacks in the server log: {f.log_tracebacks}")
    passed = True
    lines.append("criteria:")
    for name, ok, value in criteria(f):
        passed &= ok
        lines.append(f"  [{'PASS' if ok else 'FAIL'}] {name}: {value}")
    lines.append("SOAK PASSED" if passed else "SOAK FAILED")
    return passed, "\n".join(lines)
