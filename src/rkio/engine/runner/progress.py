"""Load progress: is a loading runner still working, or stuck?

A heartbeat alone only proves the process is alive: while ``rkllm_init`` blocks in C (ctypes released the
GIL), a Python thread keeps beating even if init waits forever (e.g. on an IOMMU domain switch that never
comes, rkllm-runtime.md §2.1). So each beat carries what the load really did: CPU time of the other
threads, resident memory, major page faults and bytes read by anyone but the heartbeat itself. The gateway
counts a beat as progress only when one of these moved by a meaningful step.
"""

from __future__ import annotations

import time

import msgspec

CPU_STEP_MS = 100  # the writer thread's own cost per beat (~20 µs) would need ~80 min to reach this
RSS_STEP = 1 << 20
READ_STEP = 1 << 20


class LoadWork(msgspec.Struct, array_like=True):
    """Cumulative counters of one runner process while it loads."""

    cpu_ms: int  # CPU of every thread but the heartbeat's
    rss_bytes: int
    major_faults: int
    read_bytes: int  # rchar minus what the heartbeat itself read


def made_progress(before: LoadWork | None, now: LoadWork) -> bool:
    """True when ``now`` shows real work since ``before`` (the last beat that counted as progress)."""
    if before is None:
        return True
    return (now.cpu_ms - before.cpu_ms >= CPU_STEP_MS
            or abs(now.rss_bytes - before.rss_bytes) >= RSS_STEP
            or now.major_faults > before.major_faults
            or now.read_bytes - before.read_bytes >= READ_STEP)


class LoadWorkMeter:
    """Reads this process's counters from /proc; call ``read`` only from the heartbeat thread."""

    def __init__(self, proc: str = "/proc/self") -> None:
        self._proc = proc
        self._own_reads = 0

    def _read(self, name: str) -> bytes:
        try:
            with open(f"{self._proc}/{name}", "rb") as fh:
                data = fh.read()
        except OSError:
            return b""
        self._own_reads += len(data)
        return data

    def read(self) -> LoadWork:
        own_before = self._own_reads
        rchar = _field(self._read("io"), b"rchar:")
        status = self._read("status")
        stat = self._read("stat").rsplit(b")", 1)[-1].split()
        major = int(stat[9]) if len(stat) > 9 else 0  # field 12 of /proc/pid/stat: majflt
        cpu_ms = int((time.process_time() - time.thread_time()) * 1000)
        return LoadWork(cpu_ms=cpu_ms, rss_bytes=_field(status, b"VmRSS:") * 1024, major_faults=major,
                        read_bytes=max(0, rchar - own_before))


def _field(text: bytes, key: bytes) -> int:
    for line in text.splitlines():
        if line.startswith(key):
            parts = line.split()
            return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return 0
