"""The probe's experiment series: each model alone (the ladder), then pairs in each co-residency mode.

Safety rules, all enforced here:
- every load happens in a child process, so a segfault or an OOM kill costs that child, never the probe;
- before each load, MemAvailable minus the margin must hold the model's estimated footprint, else the step
  is SKIPPED (never attempted) and the series ends;
- a series stops at its first failure: the ladder at the first model that does not load and answer alone,
  each pair mode at the first pair that fails in that mode (pairs run smallest combined footprint first).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

from rkio.probe.measure import ProcessMemory, mem_available
from rkio.probe.outcomes import Outcome, output_outcome
from rkio.probe.plan import (
    DOMAIN_BYTES,
    UNMEASURED_FACTOR,
    PairMode,
    PairResult,
    ProbeConfig,
    ProbeModel,
    SoloResult,
    StepResult,
)
from rkio.probe.session import Answer, ChildProcess
from rkio.units import format_size


class Child(Protocol):
    """What the series need from a child process (``ChildProcess``, or a fake in unit tests)."""

    label: str

    def request(self, payload: dict[str, Any], timeout: float) -> Answer: ...
    def alive(self) -> bool: ...
    def memory(self) -> ProcessMemory | None: ...
    def runtime_errors(self) -> str | None: ...
    def close(self, timeout: float = 10.0) -> None: ...


Spawn = Callable[[str], Child]
_DEATHS = frozenset({Outcome.CRASHED, Outcome.KILLED, Outcome.HUNG})
Gauge = Callable[[int], int]
"""Bytes available for the next load, given the bytes the probe believes its live children hold.

On a board this is MemAvailable (the kernel already sees the children); a simulator gauge subtracts them.
"""


def host_gauge(_resident: int) -> int:
    return mem_available()


class Prober:
    """Runs the series of one ``ProbeConfig`` and keeps every step's result."""

    def __init__(self, config: ProbeConfig, spawn: Spawn | None = None, gauge: Gauge = host_gauge,
                 log: Callable[[str], None] = lambda _line: None) -> None:
        self.config = config
        self.spawn: Spawn = spawn or (lambda label: ChildProcess(label, config.env))
        self.gauge = gauge
        self.log = log
        self.solos: list[SoloResult] = []
        self.pairs: list[PairResult] = []
        self.stopped: list[str] = []
        self._resident: dict[tuple[str, str], int] = {}  # (child, slot) -> estimated bytes

    # ------------------------------------------------------------------ series

    def run(self) -> None:
        self.run_ladder()
        if self.config.pairs:
            self.run_pairs()

    def run_ladder(self) -> None:
        for model in self.config.ladder():
            solo = SoloResult(model)
            self.solos.append(solo)
            child = self.spawn("A")
            try:
                load = self._load(child, "solo", model, domain=0, slot="a")
                solo.steps.append(load)
                if load.outcome is Outcome.OK:
                    solo.steps.append(self._generate(child, "solo", model, 0, "a", reference=None))
            finally:
                self._close(child)
            self.log(f"solo {model.name}: {solo.outcome}")
            if solo.outcome is not Outcome.OK:
                self.stopped.append(f"ladder stopped at {model.name}: {solo.outcome}")
                return

    def run_pairs(self) -> None:
        usable = [s for s in self.solos if s.outcome is Outcome.OK]
        # Larger first: the server's situation (a big model resident, another one requested) and the one where
        # the OOM killer's choice shows, since it picks the largest process, i.e. the first.
        candidates = [(b, a) for i, a in enumerate(usable) for b in usable[i + 1:]]
        candidates.sort(key=lambda ab: self._footprint(ab[0]) + self._footprint(ab[1]))
        active = list(self.config.pair_modes)
        for first, second in candidates:
            for mode in list(active):
                pair = self._pair(mode, first, second)
                self.pairs.append(pair)
                self.log(f"{mode}: {first.model.name} + {second.model.name}: {pair.outcome}")
                if pair.outcome is not Outcome.OK:
                    active.remove(mode)
                    self.stopped.append(
                        f"{mode} stopped at {first.model.name} + {second.model.name}: {pair.outcome}")
            if not active:
                return

    # ------------------------------------------------------------------ one pair

    def _pair(self, mode: PairMode, first: SoloResult, second: SoloResult) -> PairResult:
        combined = self._footprint(first) + self._footprint(second)
        pair = PairResult(mode, first.model, second.model, combined)
        first_domain = 0
        # A model bigger than one domain already spans several from its base (§2.2), so "different" means
        # past the last domain the first one occupies.
        spanned = max(1, math.ceil(self._footprint(first) / DOMAIN_BYTES))
        second_domain = first_domain if mode is PairMode.SAME_DOMAIN else first_domain + spanned
        a = self.spawn("A")
        b = a if mode is PairMode.ONE_PROCESS else self.spawn("B")
        slot_b = "b" if mode is PairMode.ONE_PROCESS else "a"
        series = mode.value
        try:
            pair.steps.append(self._load(a, series, first.model, first_domain, "a"))
            if pair.steps[-1].outcome is not Outcome.OK:
                return pair
            load_b = self._load(b, series, second.model, second_domain, slot_b)
            pair.steps.append(load_b)
            if load_b.outcome is Outcome.SKIPPED:
                return pair
            reply_a = self._generate(a, series, first.model, first_domain, "a", first.reference)
            pair.steps.append(reply_a)
            # Asking the first model is what reveals its death: an OOM kill may land after the load returned.
            pair.first_survived_second_load = reply_a.outcome not in _DEATHS
            if load_b.outcome is Outcome.OK:
                pair.steps.append(
                    self._generate(b, series, second.model, second_domain, slot_b, second.reference))
        finally:
            self._close(a)
            if b is not a:
                self._close(b)
        return pair

    # ------------------------------------------------------------------ steps

    def _footprint(self, solo: SoloResult) -> int:
        return solo.footprint_bytes or self._estimate(solo.model)

    def _estimate(self, model: ProbeModel) -> int:
        for solo in self.solos:
            if solo.model == model and solo.footprint_bytes:
                return solo.footprint_bytes
        return int(model.size_bytes * UNMEASURED_FACTOR)

    def _load(self, child: Child, series: str, model: ProbeModel, domain: int, slot: str) -> StepResult:
        estimate = self._estimate(model)
        before = self.gauge(sum(self._resident.values()))
        if before - self.config.margin_bytes < estimate:
            return StepResult(series, "load", model.name, child.label, domain, Outcome.SKIPPED,
                              f"needs ~{format_size(estimate)}, available {format_size(before)} "
                              f"minus margin {format_size(self.config.margin_bytes)}",
                              mem_available_before=before)
        request = {"op": "load", "slot": slot, "path": model.path, "base_domain_id": domain,
                   "max_context_len": self.config.max_context_len,
                   "max_new_tokens": self.config.max_new_tokens,
                   "library": self.config.library, "abi": self.config.abi}
        started = time.monotonic()
        answer = child.request(request, self.config.step_timeout)
        elapsed = time.monotonic() - started
        if answer.reply is not None and answer.reply.get("ok"):
            self._resident[(child.label, slot)] = estimate
            outcome, detail = Outcome.OK, str(answer.reply.get("runtime", ""))
        elif answer.reply is not None:
            # The runtime's last "E rkllm: ..." line says why ("failed to malloc npu memory, size: N").
            said = child.runtime_errors()
            outcome, detail = Outcome.REFUSED, said or str(answer.reply.get("error", ""))
        else:
            outcome, detail = answer.outcome or Outcome.CRASHED, answer.detail
        memory = child.memory()
        after = self.gauge(sum(self._resident.values()))
        return StepResult(series, "load", model.name, child.label, domain, outcome, detail,
                          mem_available_before=before, mem_available_after=after,
                          rss_bytes=memory.rss_bytes if memory else None,
                          hwm_bytes=memory.hwm_bytes if memory else None, elapsed_s=elapsed)

    def _generate(self, child: Child, series: str, model: ProbeModel, domain: int, slot: str,
                  reference: str | None) -> StepResult:
        started = time.monotonic()
        answer = child.request({"op": "generate", "slot": slot, "prompt": self.config.prompt},
                               self.config.step_timeout)
        elapsed = time.monotonic() - started
        memory = child.memory()
        after = self.gauge(sum(self._resident.values()))  # the first generation touches the KV cache
        text: str | None = None
        runtime_mb: float | None = None
        if answer.reply is not None and answer.reply.get("ok"):
            text = str(answer.reply.get("text", ""))
            runtime_mb = answer.reply.get("memory_usage_mb")
            outcome = output_outcome(reference, text)
            detail = ""
            if outcome is Outcome.CORRUPTION:
                detail = f"replied {text[:40]!r}, alone {(reference or '')[:40]!r}"
        elif answer.reply is not None:
            outcome, detail = Outcome.ERROR, str(answer.reply.get("error", ""))
        else:
            outcome, detail = answer.outcome or Outcome.CRASHED, answer.detail
        return StepResult(series, "generate", model.name, child.label, domain, outcome, detail, text=text,
                          mem_available_after=after, rss_bytes=memory.rss_bytes if memory else None,
                          hwm_bytes=memory.hwm_bytes if memory else None,
                          runtime_mb=runtime_mb, elapsed_s=elapsed)

    def _close(self, child: Child) -> None:
        child.close()
        for key in [k for k in self._resident if k[0] == child.label]:
            del self._resident[key]
