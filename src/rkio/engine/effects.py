"""The scheduler's system-call table: everything it wants done, as fire-and-forget calls.

The asyncio shell implements it. None of these may block; slow work (loading, stopping, aborting) is
started in a task and its result comes back as an event. ``grant`` is the one call with an answer: it
returns False when the waiting client has already gone, and only then does the scheduler not count it.
"""

from __future__ import annotations

from typing import Protocol

from rkio.engine.types import EngineEvent, ModelSpec
from rkio.errors import RkioError
from rkio.runtime.base import LoadParams


class Effects(Protocol):
    def start_load(self, model: str, incarnation: int, spec: ModelSpec, load: LoadParams) -> None:
        """Spawn a runner for ``spec``; report ``LoadDone`` or ``LoadFailed``."""
        ...

    def stop_runner(self, model: str, incarnation: int) -> None:
        """Stop the runner gracefully; its reaping reports ``RunnerExited``."""
        ...

    def grant(self, request_id: int, model: str, incarnation: int, load_s: float | None) -> bool:
        """Hand the runner to the waiting request. False if the request is gone (nothing granted)."""
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
