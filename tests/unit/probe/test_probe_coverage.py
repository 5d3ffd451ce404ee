"""Which of a runner's measures include the NPU buffers, judged from one model's solo steps."""

from __future__ import annotations

import pytest

from rkio.probe.coverage import npu_coverage
from rkio.probe.outcomes import Outcome
from rkio.probe.plan import StepResult, footprint_of
from rkio.units import GiB, MiB

FILE = 1 * GiB


def solo(before: int | None, after_load: int | None, after_generate: int | None, hwm: int,
         runtime_mb: float | None) -> list[StepResult]:
    return [StepResult("solo", "load", "m", "A", 0, Outcome.OK, mem_available_before=before,
                       mem_available_after=after_load, rss_bytes=hwm, hwm_bytes=hwm),
            StepResult("solo", "generate", "m", "A", 0, Outcome.OK, mem_available_after=after_generate,
                       rss_bytes=hwm, hwm_bytes=hwm, runtime_mb=runtime_mb)]


@pytest.mark.parametrize(("hwm", "runtime_mb", "measures", "summary"), [
    (40 * MiB, 1500.0, ("runtime",), "runtime (memory_usage_mb)"),   # the simulator's ledger mode
    (1480 * MiB, 1500.0, ("rss", "runtime"), "rss (VmRSS/VmHWM), runtime (memory_usage_mb)"),
    (40 * MiB, 40.0, (), "only the MemAvailable drop"),            # buffers outside RSS (dma mode)
    (40 * MiB, None, (), "only the MemAvailable drop"),            # a runtime before 1.2.1
])
def test_a_measure_close_to_the_drop_covers_the_buffers(hwm: int, runtime_mb: float | None,
                                                         measures: tuple[str, ...], summary: str) -> None:
    # the load takes 1400 MiB, the first generation another 100 (KV cache touched)
    steps = solo(8 * GiB, 8 * GiB - 1400 * MiB, 8 * GiB - 1500 * MiB, hwm, runtime_mb)
    coverage = npu_coverage(steps, FILE)
    assert coverage.drop_bytes == 1500 * MiB
    assert (coverage.measures, coverage.summary(), coverage.drop_counts) == (measures, summary, True)
    assert footprint_of(steps) == max(1500 * MiB, hwm, int((runtime_mb or 0) * MiB))


def test_no_verdict_without_a_plausible_drop() -> None:
    unread = npu_coverage(solo(None, None, None, 40 * MiB, 1500.0), FILE)
    assert unread.measures is None and not unread.drop_counts
    assert unread.summary() == "unknown (MemAvailable was not read)"
    # something else freed memory while the model loaded: a drop under half the file proves nothing
    noisy = npu_coverage(solo(8 * GiB, 8 * GiB - 100 * MiB, 8 * GiB - 200 * MiB, 40 * MiB, 40.0), FILE)
    assert noisy.measures is None
    assert noisy.summary() == "unknown (MemAvailable fell by 200 MiB, under half the model file)"
