"""The runner's own memory figures, read from /proc/self/status (VmRSS, VmHWM)."""

from __future__ import annotations

from rkio.engine.runner.frames import MemoryReport
from rkio.engine.types import RunnerMemory

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


def measure(runtime_mb: float | None = None, status_path: str = STATUS) -> MemoryReport:
    """This process's resident and peak memory, plus the runtime's own figure when it reported one."""
    try:
        with open(status_path) as fh:
            rss, hwm = parse_status(fh.read())
    except OSError:
        rss = hwm = 0
    return MemoryReport(rss_bytes=rss, hwm_bytes=hwm, runtime_mb=runtime_mb)


def runner_memory(report: MemoryReport | None) -> RunnerMemory | None:
    """The gateway's view of a runner's memory report."""
    if report is None:
        return None
    return RunnerMemory(report.rss_bytes, report.hwm_bytes, report.runtime_mb)
