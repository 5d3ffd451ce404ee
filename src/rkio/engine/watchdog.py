"""First-token and inter-token watchdog for one generation, with no per-token timer work.

The request's task marks when it starts waiting on the runner (``waiting``) and when a chunk arrived
(``got``), or both at once for a chunk pushed past the task (``passed``); a single timer fires at the
earliest possible deadline and re-arms itself from those marks. Time the client spends not reading does
not count: only waiting on the runner can stall.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Timers(Protocol):
    def time(self) -> float: ...
    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Any: ...


class Watchdog:
    """Calls ``on_stall(first_token)`` once when the runner kept the request waiting too long."""

    __slots__ = ("_first_timeout", "_handle", "_on_stall", "_stall_timeout", "_timers", "first", "since")

    def __init__(self, timers: Timers, first_timeout: float, stall_timeout: float,
                 on_stall: Callable[[bool], None]) -> None:
        self._timers = timers
        self._first_timeout = first_timeout
        self._stall_timeout = stall_timeout
        self._on_stall = on_stall
        self._handle: Any = None
        self.first = True  # no token yet
        self.since: float | None = timers.time()  # when we started waiting on the runner; None = not

    def start(self) -> None:
        self._arm(self._timers.time() + self._limit())

    def waiting(self) -> None:
        self.since = self._timers.time()

    def got(self) -> None:
        self.first = False
        self.since = None

    def passed(self) -> None:
        """A chunk went straight to the client (``rkio.engine.chunk_push``): the next one is due from now."""
        self.first = False
        self.since = self._timers.time()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _limit(self) -> float:
        return self._first_timeout if self.first else self._stall_timeout

    def _arm(self, when: float) -> None:
        self._handle = self._timers.call_at(when, self._fire)

    def _fire(self) -> None:
        now = self._timers.time()
        if self.since is None:  # the client is holding a chunk: not the runner's fault
            self._arm(now + self._limit())
            return
        due = self.since + self._limit()
        if now >= due:
            self._handle = None
            self._on_stall(self.first)
        else:
            self._arm(due)
