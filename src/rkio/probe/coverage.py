"""Which of a runner's own measures include a model's NPU buffers, decided from one solo run.

NPU buffers are shmem pages the process need not map (tmp/researches/memory-analysis.md §1.1), so VmRSS,
VmHWM and the runtime's ``memory_usage_mb`` (documented as VmHWM, §1.6) may all miss them; the drop of
MemAvailable across the load and first generation cannot. The probe runs each model alone on a machine kept
quiet for it (§7.2), so there the drop is what the model took, and a measure that comes close to it covers
the buffers. rkio's server then trusts that measure for this model file (``FootprintStore.confirm``);
where none comes close, only estimates and figures measured by the probe itself count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rkio.probe.plan import StepResult, load_drop
from rkio.units import MiB

COVER_SHARE = 0.9  # a measure at least 90 % of the drop includes the buffers (the rest: the interpreter etc.)
PLAUSIBLE_SHARE = 0.5  # a drop below half the model file cannot be what the load took: no verdict

LABELS = {"rss": "VmRSS/VmHWM", "runtime": "memory_usage_mb"}


@dataclass(frozen=True, slots=True)
class NpuCoverage:
    """A solo run's figures and the verdict: ``measures`` covering the NPU buffers, None when undecided."""

    drop_bytes: int | None
    rss_bytes: int | None  # the largest VmRSS/VmHWM of the child
    runtime_bytes: int | None  # memory_usage_mb, when the runtime reported it
    measures: tuple[str, ...] | None
    reason: str = ""  # why there is no verdict

    @property
    def drop_counts(self) -> bool:
        """The drop was plausible, so a figure that includes it includes the NPU buffers."""
        return self.measures is not None

    def summary(self) -> str:
        if self.measures is None:
            return f"unknown ({self.reason})"
        if not self.measures:
            return "only the MemAvailable drop"
        return ", ".join(f"{m} ({LABELS[m]})" for m in self.measures)


def npu_coverage(steps: Sequence[StepResult], size_bytes: int) -> NpuCoverage:
    """The verdict for one model's solo steps (a load, then a generation)."""
    drop = load_drop(steps)
    rss = max((b for s in steps for b in (s.rss_bytes, s.hwm_bytes) if b), default=None)
    runtime = max((int(s.runtime_mb * MiB) for s in steps if s.runtime_mb), default=None)
    if drop is None:
        return NpuCoverage(drop, rss, runtime, None, "MemAvailable was not read")
    if drop < size_bytes * PLAUSIBLE_SHARE:
        return NpuCoverage(drop, rss, runtime, None,
                           f"MemAvailable fell by {drop // MiB} MiB, under half the model file")
    measures = tuple(name for name, value in (("rss", rss), ("runtime", runtime))
                     if value is not None and value >= drop * COVER_SHARE)
    return NpuCoverage(drop, rss, runtime, measures)
