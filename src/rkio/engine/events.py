"""What the scheduler reacts to: frozen event records, posted by the shell, handled in arrival order.

Time is never inside an event; the shell passes ``now`` (a monotonic reading) with each one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rkio.engine.runner.messages import RunnerExit, RunnerMemory
from rkio.engine.types import ModelSpec
from rkio.errors import RkioError
from rkio.runtime.base import Sampling

RequestKind = Literal["generate", "load"]
Outcome = Literal["ok", "error", "cancelled", "crashed", "killed"]
"""How a granted generation ended. ``crashed``: the runner died under it (the runtime's doing, counts
towards quarantine once reaped); ``killed``: rkio killed the runner itself (an abort that did not return
within ``abort_grace``), which never counts as a crash."""


@dataclass(frozen=True, slots=True)
class Request:
    """A client wants ``spec`` loaded (``load``) or wants one generation on it (``generate``).

    ``num_ctx`` None means "the model's configured max_context_len"; ``lease`` ties a ``load`` request to
    a lease that keeps the model resident once loaded.
    """

    request_id: int
    spec: ModelSpec
    kind: RequestKind = "generate"
    num_ctx: int | None = None
    keep_alive: float | None = None
    lease: str | None = None
    open_lease: bool = False
    keep_history: bool | None = None  # a lease's run: True keeps its KV (exclusive), False releases it
    sampling: Sampling | None = None  # serve from a model loaded with this sampling (sampling = "reinit")


@dataclass(frozen=True, slots=True)
class Cancel:
    """The client went away (or gave up) before its request was granted."""

    request_id: int


@dataclass(frozen=True, slots=True)
class LoadDone:
    model: str
    incarnation: int
    pid: int | None
    memory: RunnerMemory | None
    features: frozenset[str] = frozenset()  # the runner's runtime features


@dataclass(frozen=True, slots=True)
class LoadFailed:
    model: str
    incarnation: int
    error: RkioError
    crashed: bool  # the process died (counts towards quarantine), not a clean refusal


@dataclass(frozen=True, slots=True)
class GenerationDone:
    """A granted generation is over and its runner is idle again (aborts already confirmed)."""

    request_id: int
    outcome: Outcome
    memory: RunnerMemory | None = None


@dataclass(frozen=True, slots=True)
class RunnerDied:
    """The runner's frame pipe reached EOF: the process is dead or dying, nothing may be granted to it.

    Posted at once, long before the reap (``RunnerExited``); its memory stays counted until then.
    """

    model: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class RunnerKilled:
    """The shell is about to SIGKILL this runner for ``reason`` (an abort that did not return in time).

    Posted before the kill, so the death that follows is known to be rkio's doing, not a crash.
    """

    model: str
    incarnation: int
    reason: str


@dataclass(frozen=True, slots=True)
class TokenStall:
    """The shell's watchdog saw no token for the first-token or inter-token deadline."""

    request_id: int
    first_token: bool


@dataclass(frozen=True, slots=True)
class RunnerExited:
    """A runner process was reaped and its memory confirmed released (or the wait for it capped)."""

    model: str
    incarnation: int
    exit: RunnerExit


@dataclass(frozen=True, slots=True)
class Unload:
    request_id: int
    model: str


@dataclass(frozen=True, slots=True)
class CloseLease:
    lease: str


@dataclass(frozen=True, slots=True)
class Tick:
    """A deadline the scheduler asked for (``next_deadline``) has passed."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Stop accepting work. ``abort`` also aborts the generations still running (the grace is over)."""

    abort: bool = False


Event = (
    Request | Cancel | LoadDone | LoadFailed | GenerationDone | RunnerDied | RunnerKilled | TokenStall
    | RunnerExited | Unload | CloseLease | Tick | Shutdown
)
