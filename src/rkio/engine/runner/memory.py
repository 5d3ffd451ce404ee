"""The runner's own memory figures: VmRSS and VmHWM from /proc/self/status, and what the load took from the
machine (the drop of MemAvailable across the load and the first generation)."""

from __future__ import annotations

from collections.abc import Callable

from rkio.engine import meminfo
from rkio.engine.runner.frames import MemoryReport
from rkio.engine.runner.messages import RunnerMemory

STATUS = "/proc/self/status"


def parse_status(text: str) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes from the text of a /proc/<pid>/status file; 0 for missing fields."""
    rss = hwm = 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = _kib(line)
        elif line.startswith("VmHWM:"):
            hwm = _kib(line)
    return rss, hwm


def _kib(line: str) -> int:
    fields = line.split()
    return int(fields[1]) * 1024 if len(fields) >= 2 and fields[1].isdigit() else 0


class LoadDrop:
    """How far MemAvailable fell from just before a load to its lowest reading up to the first generation.

    NPU buffers are shmem pages that the process need not map (memory-analysis §1.1), so they may be missing
    from VmRSS, VmHWM and the runtime's VmHWM-based figure, but never from MemAvailable. The reading is
    machine-wide, so other processes make it noisy either way: the engine takes it as one more candidate for
    a model's footprint, never as a reason to count less. After the first generation the figure is frozen
    (later readings would mostly measure the rest of the machine).
    """

    def __init__(self, probe: Callable[[], int | None] = meminfo.mem_available) -> None:
        self._probe = probe
        self._before: int | None = None
        self._lowest: int | None = None
        self._frozen = False

    def start(self) -> None:
        self._before = self._lowest = self._probe()
        self._frozen = False

    def sample(self) -> int | None:
        """The drop so far in bytes (0 if MemAvailable rose), or None when it cannot be read."""
        if not self._frozen and self._before is not None:
            now = self._probe()
            if now is not None and self._lowest is not None:
                self._lowest = min(self._lowest, now)
        if self._before is None or self._lowest is None:
            return None
        return max(0, self._before - self._lowest)

    def freeze(self) -> None:
        self._frozen = True


def measure(runtime_mb: float | None = None, status_path: str = STATUS,
            available_drop: int | None = None) -> MemoryReport:
    """This process's resident and peak memory, plus the runtime's own figure and the MemAvailable drop
    when there are such figures."""
    try:
        with open(status_path) as fh:
            rss, hwm = parse_status(fh.read())
    except OSError:
        rss = hwm = 0
    return MemoryReport(rss_bytes=rss, hwm_bytes=hwm, runtime_mb=runtime_mb,
                        available_drop_bytes=available_drop)


def runner_memory(report: MemoryReport | None) -> RunnerMemory | None:
    """The gateway's view of a runner's memory report."""
    if report is None:
        return None
    return RunnerMemory(report.rss_bytes, report.hwm_bytes, report.runtime_mb, report.available_drop_bytes)
