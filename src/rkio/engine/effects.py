"""The scheduler's system-call table: everything it wants done, as fire-and-forget calls.

The asyncio shell implements it. None of these may block; slow work (loading, stopping, aborting) is
started in a task and its result comes back as an event. ``grant`` is the one call with an answer, and the
answer says why nothing was granted: a client that has gone is forgotten, a runner that has gone keeps its
waiter queued (it will be served by the next incarnation).
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from rkio.engine.types import EngineEvent, ModelSpec
from rkio.errors import RkioError
from rkio.runtime.base import LoadParams


class GrantResult(Enum):
    GRANTED = "granted"
    CLIENT_GONE = "client gone"  # the waiting request stopped listening: drop it, it ended itself
    RUNNER_GONE = "runner gone"  # the runner died before the scheduler heard: keep the waiter


class Effects(Protocol):
    def start_load(self, model: str, incarnation: int, spec: ModelSpec, load: LoadParams) -> None:
        """Spawn a runner for ``spec``; report ``LoadDone`` or ``LoadFailed``."""
        ...

    def stop_runner(self, model: str, incarnation: int, reason: str) -> None:
        """Stop the runner gracefully; its reaping reports ``RunnerExited``."""
        ...

    def grant(self, request_id: int, model: str, incarnation: int, load_s: float | None) -> GrantResult:
        """Hand the runner to the waiting request; nothing is granted unless ``GRANTED``."""
        ...

    def abort(self, request_id: int, error: RkioError) -> None:
        """Abort a running generation, ending it with ``error``; kill the runner if abort hangs."""
        ...

    def notify(self, request_id: int, event: EngineEvent) -> None:
        """Tell a waiting request about its progress (``Queued`` / ``Loading``)."""
        ...

    def finish(self, request_id: int, error: RkioError | None) -> None:
        """End a request that will not be granted: with ``error``, or successfully (load/unload)."""
        ...
