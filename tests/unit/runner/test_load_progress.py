"""A loading runner counts as making progress only when it really works, not merely when it beats."""

from __future__ import annotations

from pathlib import Path

import pytest

from rkio.engine.runner.progress import LoadWork, LoadWorkMeter, made_progress

BASE = LoadWork(cpu_ms=1000, rss_bytes=50 << 20, major_faults=3, read_bytes=0)


@pytest.mark.parametrize(("now", "expected"), [
    (BASE, False),
    (LoadWork(1050, 50 << 20, 3, 0), False),  # the writer thread's crumbs are not progress
    (LoadWork(1100, 50 << 20, 3, 0), True),  # init burning CPU
    (LoadWork(1000, 51 << 20, 3, 0), True),  # weights landing in memory
    (LoadWork(1000, 50 << 20, 4, 0), True),  # pages read from the model file
    (LoadWork(1000, 50 << 20, 3, 2 << 20), True),  # read() of the model file
    (LoadWork(1000, (50 << 20) + 4096, 3, 4096), False),
])
def test_made_progress(now: LoadWork, expected: bool) -> None:
    assert made_progress(BASE, now) is expected


def test_first_beat_is_progress() -> None:
    assert made_progress(None, BASE)


def test_meter_does_not_count_its_own_proc_reads(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "io").write_bytes(b"rchar: 1000\nwchar: 5\n")
    (proc / "status").write_bytes(b"Name:\tx\nVmRSS:\t   2048 kB\n")
    (proc / "stat").write_bytes(b"42 (py thon) S " + b" ".join(b"%d" % i for i in range(4, 30)))
    meter = LoadWorkMeter(str(proc))
    first = meter.read()
    assert first.rss_bytes == 2048 * 1024 and first.major_faults == 12 and first.read_bytes == 1000
    own = len((proc / "io").read_bytes()) + len((proc / "status").read_bytes()) + len(
        (proc / "stat").read_bytes())
    (proc / "io").write_bytes(b"rchar: %d\nwchar: 5\n" % (1000 + own))  # only the meter read since
    assert meter.read().read_bytes == 1000
