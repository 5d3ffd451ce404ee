"""Test doubles for the scheduler: a recording Effects and model specs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rkio.engine.effects import GrantResult
from rkio.engine.events import (
    Event,
    GenerationDone,
    LoadDone,
    LoadFailed,
    Outcome,
    Request,
    RunnerExited,
    Tick,
)
from rkio.engine.ledger import SchedulerConfig
from rkio.engine.runner.messages import RunnerExit, RunnerMemory
from rkio.engine.scheduler import Scheduler
from rkio.engine.types import EngineEvent, ModelSpec
from rkio.errors import LoadFailed as LoadFailedError
from rkio.errors import RkioError
from rkio.runtime.base import LoadParams
from rkio.units import GiB


def spec(name: str, size: int = 1 * GiB, *, runtime: str = "rkllm", ctx: int = 4096, **kw: Any) -> ModelSpec:
    ext = "rkllm" if runtime == "rkllm" else "gguf"
    path = f"/models/{name}.{ext}"
    return ModelSpec(name=name, path=path, runtime=runtime, size_bytes=size, mtime_ns=1,  # type: ignore[arg-type]
                     load=LoadParams(model_path=path, max_context_len=ctx), **kw)


def flat_footprint(spec: ModelSpec, ctx: int) -> tuple[int, bool]:
    """Footprint = file size + 1 KiB per context token, so tests can reason in whole numbers."""
    return spec.size_bytes + ctx * 1024, False


@dataclass
class FakeEffects:
    """Records every effect; ``gone`` lists request ids whose client has left (grant returns False)."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)
    gone: set[int] = field(default_factory=set)
    dead: set[tuple[str, int]] = field(default_factory=set)  # runners whose death the scheduler has not heard

    def start_load(self, model: str, incarnation: int, spec: ModelSpec, load: LoadParams) -> None:
        self.calls.append(("start_load", model, incarnation, load))

    def stop_runner(self, model: str, incarnation: int, reason: str) -> None:
        self.calls.append(("stop_runner", model, incarnation))

    def grant(self, request_id: int, model: str, incarnation: int, load_s: float | None) -> GrantResult:
        if request_id in self.gone:
            return GrantResult.CLIENT_GONE
        if (model, incarnation) in self.dead:
            return GrantResult.RUNNER_GONE
        self.calls.append(("grant", request_id, model, incarnation, load_s))
        return GrantResult.GRANTED

    def abort(self, request_id: int, error: RkioError) -> None:
        self.calls.append(("abort", request_id, error))

    def notify(self, request_id: int, event: EngineEvent) -> None:
        self.calls.append(("notify", request_id, event))

    def finish(self, request_id: int, error: RkioError | None) -> None:
        self.calls.append(("finish", request_id, error))

    # ---- queries
    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]

    def loads(self) -> list[str]:
        return [c[1] for c in self.of("start_load")]

    def load_params(self, model: str) -> LoadParams:
        return [c[3] for c in self.of("start_load") if c[1] == model][-1]

    def incarnation(self, model: str) -> int:
        return [c[2] for c in self.of("start_load") if c[1] == model][-1]

    def granted(self) -> list[int]:
        return [c[1] for c in self.of("grant")]

    def stops(self) -> list[str]:
        return [c[1] for c in self.of("stop_runner")]

    def finished(self, rid: int) -> list[RkioError | None]:
        return [c[2] for c in self.of("finish") if c[1] == rid]

    def notices(self, rid: int) -> list[EngineEvent]:
        return [c[2] for c in self.of("notify") if c[1] == rid]

    def aborts(self) -> list[tuple[int, RkioError]]:
        return [(c[1], c[2]) for c in self.of("abort")]


def make_scheduler(budget: int = 16 * GiB, **config: Any) -> tuple[Scheduler, FakeEffects]:
    effects = FakeEffects()
    return Scheduler(SchedulerConfig(budget=budget, **config), effects, flat_footprint), effects


class Harness:
    """Drives a scheduler with a fake clock: every call is one event at ``self.now``."""

    def __init__(self, budget: int = 16 * GiB, **config: Any) -> None:
        self.s, self.fx = make_scheduler(budget, **config)
        self.now = 0.0
        self._next = 0

    def request(self, model: ModelSpec, **kw: Any) -> int:
        self._next += 1
        self.s.handle(Request(self._next, model, **kw), self.now)
        return self._next

    def loaded(self, model: str, memory: RunnerMemory | None = None) -> None:
        self.s.handle(LoadDone(model, self.fx.incarnation(model), 1000, memory), self.now)

    def load_failed(self, model: str, message: str = "E rkllm: bad model", crashed: bool = False) -> None:
        self.s.handle(LoadFailed(model, self.fx.incarnation(model), LoadFailedError(message), crashed),
                      self.now)

    def done(self, rid: int, outcome: Outcome = "ok", memory: RunnerMemory | None = None) -> None:
        self.s.handle(GenerationDone(rid, outcome, memory), self.now)

    def exited(self, model: str, signal: int | None = None, during: Any = "stop") -> None:
        exit_ = RunnerExit(None if signal else 0, signal, during, None)
        self.s.handle(RunnerExited(model, self.fx.incarnation(model), exit_), self.now)

    def event(self, event: Event) -> None:
        self.s.handle(event, self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.s.handle(Tick(), self.now)

    def state(self, model: str) -> str | None:
        entry = self.s.models.get(model)
        return entry.state if entry else None
