"""The probe's vocabulary: the models, the settings of a run, and the records every step leaves behind."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from rkio.probe.outcomes import FAILURES, Outcome, worst
from rkio.units import GiB, MiB

DOMAIN_BYTES = 4 * GiB  # one IOMMU domain: 32-bit aperture of the rockchip IOMMU (rkllm-runtime.md §2.1)
UNMEASURED_FACTOR = 1.2  # guard estimate for a model not loaded yet: file size x 1.2, rkllama's rule


@dataclass(frozen=True, slots=True)
class ProbeModel:
    """A model file the user handed to the probe."""

    name: str
    path: str
    size_bytes: int

    @classmethod
    def from_path(cls, path: Path) -> ProbeModel:
        resolved = path.resolve()
        return cls(resolved.stem, str(resolved), resolved.stat().st_size)


class PairMode(StrEnum):
    """How two models are made co-resident."""

    SAME_DOMAIN = "two processes, same base_domain_id"
    DISTINCT_DOMAINS = "two processes, different base_domain_id"
    ONE_PROCESS = "one process, two handles"


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """Everything one ``rkio probe`` run needs."""

    models: tuple[ProbeModel, ...]
    max_context_len: int = 512
    max_new_tokens: int = 16
    prompt: str = "hello, please describe the weather today"
    margin_bytes: int = 1 * GiB
    step_timeout: float = 300.0
    pair_modes: tuple[PairMode, ...] = tuple(PairMode)
    pairs: bool = True
    library: str | None = None
    abi: str | None = None
    env: dict[str, str] | None = None

    def ladder(self) -> tuple[ProbeModel, ...]:
        """The models smallest first, so a series stops before the sizes that cannot work."""
        return tuple(sorted(self.models, key=lambda m: (m.size_bytes, m.name)))


@dataclass(frozen=True, slots=True)
class StepResult:
    """One action in one child, with the memory readings taken around it."""

    series: str  # "solo" or a PairMode value
    action: str  # "load" | "generate"
    model: str
    child: str  # label of the child process ("A", "B")
    domain: int
    outcome: Outcome
    detail: str = ""
    text: str | None = None
    mem_available_before: int | None = None
    mem_available_after: int | None = None
    rss_bytes: int | None = None
    hwm_bytes: int | None = None
    runtime_mb: float | None = None
    elapsed_s: float = 0.0


def load_drop(steps: Sequence[StepResult]) -> int | None:
    """How far MemAvailable fell from before the first load to its lowest reading after any later step
    (the load, then the generation that touches the KV cache), in bytes; None without readings."""
    load = next((i for i, s in enumerate(steps) if s.action == "load" and s.mem_available_before), None)
    if load is None:
        return None
    before = steps[load].mem_available_before
    after = [s.mem_available_after for s in steps[load:] if s.mem_available_after]
    if before is None or not after:
        return None
    return max(0, before - min(after))


def footprint_of(steps: Sequence[StepResult]) -> int | None:
    """The best measured footprint of a model alone, in bytes.

    The largest of: peak RSS of its child, the runtime's own memory_usage_mb (a VmHWM figure, §2.3), and
    the drop of MemAvailable across the load and first generation (catches NPU buffers not charged to the
    process's RSS).
    """
    figures: list[int] = []
    for step in steps:
        if step.hwm_bytes:
            figures.append(step.hwm_bytes)
        if step.runtime_mb:
            figures.append(int(step.runtime_mb * MiB))
    drop = load_drop(steps)
    if drop is not None:
        figures.append(drop)
    return max(figures) if figures else None


@dataclass(slots=True)
class SoloResult:
    """A model alone: whether it loads and runs, its greedy reply (the reference), its footprint."""

    model: ProbeModel
    steps: list[StepResult] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome:
        return worst([s.outcome for s in self.steps])

    @property
    def reference(self) -> str | None:
        texts = [s.text for s in self.steps if s.action == "generate" and s.outcome is Outcome.OK]
        return texts[0] if texts else None

    @property
    def footprint_bytes(self) -> int | None:
        return footprint_of(self.steps) if self.outcome is Outcome.OK else None


@dataclass(slots=True)
class PairResult:
    """Two models made co-resident in one ``mode``: ``first`` loaded, then ``second``, then both asked."""

    mode: PairMode
    first: ProbeModel
    second: ProbeModel
    combined_bytes: int  # the two solo footprints added
    steps: list[StepResult] = field(default_factory=list)
    first_survived_second_load: bool = True

    @property
    def outcome(self) -> Outcome:
        return worst([s.outcome for s in self.steps])

    @property
    def failed(self) -> bool:
        return self.outcome in FAILURES
