"""The runner's MemAvailable drop across a load and its first generation (fake MemAvailable readings)."""

from __future__ import annotations

from collections.abc import Iterator

from rkio.engine.runner.memory import LoadDrop, measure, runner_memory
from rkio.units import MiB


def readings(*values: int | None) -> Iterator[int | None]:
    return iter(values)


def test_drop_is_the_lowest_reading_below_the_start_until_frozen() -> None:
    values = readings(1000 * MiB, 700 * MiB, 650 * MiB, 800 * MiB, 100 * MiB)
    drop = LoadDrop(lambda: next(values))
    drop.start()
    assert drop.sample() == 300 * MiB  # after the load
    assert drop.sample() == 350 * MiB  # after the first generation
    drop.freeze()
    assert drop.sample() == 350 * MiB  # later readings measure the rest of the machine: not taken


def test_drop_is_zero_when_memory_came_back_and_none_without_meminfo() -> None:
    values = readings(500 * MiB, 900 * MiB)
    drop = LoadDrop(lambda: next(values))
    drop.start()
    assert drop.sample() == 0
    blind = LoadDrop(lambda: None)
    blind.start()
    assert blind.sample() is None
    assert LoadDrop(lambda: 1).sample() is None  # nothing started


def test_a_new_load_starts_a_new_measurement() -> None:
    values = readings(1000 * MiB, 400 * MiB, 2000 * MiB, 1900 * MiB)
    drop = LoadDrop(lambda: next(values))
    drop.start()
    drop.sample()
    drop.freeze()
    drop.start()
    assert drop.sample() == 100 * MiB


def test_the_report_carries_the_drop_to_the_gateway(tmp_path) -> None:
    status = tmp_path / "status"
    status.write_text("VmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n")
    memory = runner_memory(measure(12.5, str(status), available_drop=300 * MiB))
    assert memory is not None
    assert (memory.rss_bytes, memory.hwm_bytes, memory.runtime_mb, memory.available_drop_bytes) == (
        1024 * 1024, 2048 * 1024, 12.5, 300 * MiB)
