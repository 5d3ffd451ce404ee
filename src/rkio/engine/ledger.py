"""The scheduler's bookkeeping records (mutable, owned by the scheduler alone) and its configuration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rkio.config import Settings
from rkio.engine.events import RequestKind
from rkio.engine.planner import ResidentState
from rkio.engine.types import ModelSpec, RunnerMemory
from rkio.runtime.base import LoadParams
from rkio.units import MiB

FootprintFn = Callable[[ModelSpec, int], tuple[int, bool]]
"""(spec, max_context_len) -> (bytes, learned): the learned figure when we have one, else the estimate."""


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    budget: int
    npu_lanes: int = 1
    max_queue: int = 64
    queue_timeout: float = 300.0
    keep_alive: float = 300.0
    reserved_domains: tuple[int, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, budget: int) -> SchedulerConfig:
        return cls(budget=budget, npu_lanes=settings.npu_lanes, max_queue=settings.max_queue,
                   queue_timeout=settings.queue_timeout, keep_alive=settings.keep_alive,
                   reserved_domains=tuple(settings.reserved_domains))


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
    learned: bool  # ``bytes`` came from a measurement (stored or this incarnation's)
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
        """Account a measurement: raise the figure always; replace an estimate once ``settled``."""
        if memory is None:
            return
        self.rss = memory.rss_bytes
        figure = measured_bytes(memory)
        if self.learned:
            self.bytes = max(self.bytes, figure)
        elif settled:
            self.bytes, self.learned = figure, True
        else:
            self.bytes = max(self.bytes, figure)


def measured_bytes(memory: RunnerMemory) -> int:
    """A runner's footprint: the largest of its resident, peak and runtime-reported figures."""
    runtime = int(memory.runtime_mb * MiB) if memory.runtime_mb is not None else 0
    return max(memory.rss_bytes, memory.hwm_bytes, runtime)
