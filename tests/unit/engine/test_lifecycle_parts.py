"""Cooldown/quarantine policy, meminfo probes and the watchdog (no sleeps)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rkio.engine import meminfo
from rkio.engine.lifecycle import FailureRecord, cooldown_seconds, effective_keep_alive
from rkio.engine.watchdog import Watchdog
from rkio.units import MiB


def test_cooldown_doubles_from_10s_to_5min() -> None:
    assert [cooldown_seconds(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]


def test_quarantine_after_three_crashes_in_ten_minutes() -> None:
    record = FailureRecord()
    assert not record.crashed(0) and not record.crashed(300)
    assert not record.crashed(700)  # the first crash fell out of the window
    assert record.crashed(800)


def test_keep_alive_precedence() -> None:
    assert effective_keep_alive(None, None, 300) == 300
    assert effective_keep_alive(None, -1, 300) == -1
    assert effective_keep_alive(0, -1, 300) == 0


def test_meminfo_parsing(tmp_path: Path) -> None:
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       16384000 kB\nMemAvailable:    8192000 kB\nHugePages_Total:       0\n")
    assert meminfo.mem_available(path) == 8192000 * 1024
    assert meminfo.mem_available(tmp_path / "missing") is None


async def test_wait_for_release_polls_until_memory_is_back() -> None:
    readings = iter([100, 150, 400])
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    assert await meminfo.wait_for_release(lambda: next(readings), 100, 250, sleep=sleep)
    assert len(slept) == 2


async def test_wait_for_release_is_capped() -> None:
    async def sleep(seconds: float) -> None:
        pass

    assert not await meminfo.wait_for_release(lambda: 100, 100, 250, cap=1.0, interval=0.25, sleep=sleep)
    assert meminfo.expected_release(200 * MiB) == 0  # a small process: nothing worth waiting for


class FakeTimers:
    def __init__(self) -> None:
        self.now = 0.0
        self.pending: list[tuple[float, Callable[[], Any]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Any:
        self.pending.append((when, callback))
        timers = self

        class Handle:
            def cancel(self) -> None:
                timers.pending = [p for p in timers.pending if p[1] is not callback or p[0] != when]

        return Handle()

    def advance(self, to: float) -> None:
        self.now = to
        while due := [p for p in self.pending if p[0] <= to]:
            self.pending.remove(due[0])
            due[0][1]()


def test_watchdog_first_token_deadline() -> None:
    timers, stalls = FakeTimers(), []
    dog = Watchdog(timers, 10, 2, stalls.append)
    dog.start()
    timers.advance(9.9)
    assert stalls == []
    timers.advance(10)
    assert stalls == [True]


def test_watchdog_inter_token_stall_and_slow_client_is_not_a_stall() -> None:
    timers, stalls = FakeTimers(), []
    dog = Watchdog(timers, 10, 2, stalls.append)
    dog.start()
    timers.advance(1)
    dog.got()  # first token; the client holds it for a long time
    timers.advance(50)
    assert stalls == []
    dog.waiting()  # back to waiting on the runner at t=50
    timers.advance(51.9)
    assert stalls == []
    timers.advance(52)
    assert stalls == [False]
