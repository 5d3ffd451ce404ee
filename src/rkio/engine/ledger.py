"""The scheduler's bookkeeping records (mutable, owned by the scheduler alone) and its configuration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rkio.engine.events import RequestKind
from rkio.engine.planner import ResidentState
from rkio.engine.runner.messages import RunnerMemory
from rkio.engine.types import ModelSpec
from rkio.runtime.base import LoadParams, Sampling
from rkio.units import MiB

FootprintFn = Callable[[ModelSpec, int], tuple[int, bool]]
"""(spec, max_context_len) -> (bytes, learned): a trusted learned figure, else the estimate (footprints)."""


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    budget: int
    npu_lanes: int = 1
    max_queue: int = 64
    queue_timeout: float = 300.0
    keep_alive: float = 300.0
    reserved_domains: tuple[int, ...] = ()


@dataclass(slots=True)
class Waiter:
    request_id: int
    spec: ModelSpec
    kind: RequestKind
    need_ctx: int
    keep_alive: float | None
    arrived: float
    deadline: float
    seq: int
    lease: str | None = None
    open_lease: bool = False
    position: int = -1  # last Queued position told to the client
    told_loading: bool = False
    keep_history: bool | None = None
    sampling: Sampling | None = None  # a sampling re-init wish (rkio.engine.sampling_groups)
    overtaken: int = 0  # grants to waiters behind this head that fit the loaded sampling

    @property
    def model(self) -> str:
        return self.spec.name


@dataclass(slots=True)
class Running:
    request_id: int
    model: str
    incarnation: int
    lane: bool  # holds an NPU lane
    lease: str | None = None
    keep_history: bool | None = None


@dataclass(slots=True)
class ModelEntry:
    """A runner that is loading, loaded, or stopping (its memory counts until it is reaped)."""

    spec: ModelSpec
    incarnation: int
    state: ResidentState
    ctx: int
    bytes: int
    learned: bool  # ``bytes`` came from a trusted measurement (stored, or this CPU incarnation's)
    base_domain: int | None
    keep_alive: float
    load_started: float
    loaded_at: float = 0.0
    load_s: float | None = None
    last_used: float = 0.0
    pid: int | None = None
    rss: int | None = None
    running: int | None = None  # request id of the generation in progress
    stop_reason: str | None = None
    unload_requested: bool = False
    unload_waiters: list[int] = field(default_factory=list)
    load: LoadParams | None = None  # the parameters the runner was started with
    features: frozenset[str] = frozenset()  # the runtime's, once loaded

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def npu(self) -> bool:
        return self.spec.runtime == "rkllm"

    def measured(self, memory: RunnerMemory | None, settled: bool) -> None:
        """Account a measurement: raise the figure always; replace a CPU model's estimate once ``settled``.

        An NPU model's estimate is never replaced by this incarnation's figures: whether they include the
        NPU buffers is known only to the footprint store (a probe's confirmation), which lets a covered
        figure count from the model's next load on.
        """
        if memory is None:
            return
        self.rss = memory.rss_bytes
        figure = measured_bytes(memory, npu=self.npu)
        if settled and not self.learned and not self.npu:
            self.bytes, self.learned = figure, True
        else:
            self.bytes = max(self.bytes, figure)


def measured_bytes(memory: RunnerMemory, *, npu: bool) -> int:
    """A runner's footprint: the largest of its resident, peak and runtime-reported figures, and for NPU
    models the MemAvailable drop across its load (the one figure that cannot miss NPU buffers; machine-wide
    noise only ever raises it here, CPU models' RSS already holds their weights)."""
    runtime = int(memory.runtime_mb * MiB) if memory.runtime_mb is not None else 0
    drop = (memory.available_drop_bytes or 0) if npu else 0
    return max(memory.rss_bytes, memory.hwm_bytes, runtime, drop)
