"""Learning footprints: which measurements may lower a model's figure below the conservative estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_fakes import spec

from rkio.engine.footprints import FILE_NAME, FootprintStore
from rkio.engine.ledger import ModelEntry, measured_bytes
from rkio.engine.planner import estimate_footprint
from rkio.engine.runner.messages import RunnerMemory
from rkio.units import GiB, MiB

ESTIMATE = estimate_footprint(GiB, 4096)  # about 1.7 GiB for a 1 GiB file


def report(rss: int = 60 * MiB, runtime_mb: float | None = None, drop: int | None = None) -> RunnerMemory:
    return RunnerMemory(rss_bytes=rss, hwm_bytes=rss, runtime_mb=runtime_mb, available_drop_bytes=drop)


def test_cpu_model_learns_persists_and_only_grows(tmp_path: Path) -> None:
    model = spec("a", GiB, runtime="llamacpp")
    store = FootprintStore(tmp_path)
    assert store.lookup(model, 4096) == (ESTIMATE, False)
    store.record(model, 4096, 1200 * MiB)
    store.record(model, 4096, 1100 * MiB)
    again = FootprintStore(tmp_path)
    assert again.lookup(model, 4096) == (1200 * MiB, True)
    assert again.lookup(model, 8192)[1] is False  # another context is another figure
    assert again.lookup(spec("a", GiB + 1, runtime="llamacpp"), 4096)[1] is False  # the file changed


def test_rkllm_figure_not_known_to_cover_npu_buffers_never_lowers_the_estimate(tmp_path: Path) -> None:
    model = spec("a", GiB)
    store = FootprintStore(tmp_path)
    store.learn(model, 4096, report(rss=60 * MiB, runtime_mb=60.0))  # RSS and a VmHWM-like runtime figure
    assert store.lookup(model, 4096) == (ESTIMATE, False)
    store.learn(model, 4096, report(drop=2 * GiB))  # what the load took from the machine: more than estimated
    assert FootprintStore(tmp_path).lookup(model, 4096) == (2 * GiB, False)


def test_covered_figure_counts_but_never_below_the_model_file(tmp_path: Path) -> None:
    model = spec("a", GiB)
    store = FootprintStore(tmp_path)
    store.record(model, 4096, 1300 * MiB, covers_npu=True)
    assert store.lookup(model, 4096) == (1300 * MiB, True)
    small = spec("b", GiB)
    store.record(small, 4096, 30 * MiB, covers_npu=True)
    assert store.lookup(small, 4096) == (GiB, True)


@pytest.mark.parametrize(("measures", "memory", "covered"), [
    ((), report(runtime_mb=1400.0), False),                 # nothing confirmed: not even the runtime figure
    (("runtime",), report(runtime_mb=1400.0), True),
    (("runtime",), report(drop=1400 * MiB), False),          # a library before 1.2.1 reports no figure
    (("rss",), report(rss=1400 * MiB), True),
])
def test_a_report_covers_npu_buffers_only_through_a_confirmed_measure(
        tmp_path: Path, measures: tuple[str, ...], memory: RunnerMemory, covered: bool) -> None:
    model = spec("a", GiB)
    store = FootprintStore(tmp_path)
    store.confirm(model, measures)
    store.learn(model, 4096, memory)
    want = (1400 * MiB, True) if covered else (ESTIMATE, False)
    assert FootprintStore(tmp_path).lookup(model, 4096) == want


def test_a_covered_figure_stays_covered_and_takes_the_largest_measurement(tmp_path: Path) -> None:
    model = spec("a", GiB)
    store = FootprintStore(tmp_path)
    store.confirm(model, ["runtime"])
    store.learn(model, 4096, report(runtime_mb=1300.0, drop=1350 * MiB))
    store.learn(model, 4096, report(runtime_mb=None))  # a later report without the confirmed figure
    assert store.lookup(model, 4096) == (1350 * MiB, True)


def test_the_drop_counts_for_npu_models_only() -> None:
    memory = report(rss=500 * MiB, drop=900 * MiB)
    assert measured_bytes(memory, npu=True) == 900 * MiB
    assert measured_bytes(memory, npu=False) == 500 * MiB  # llama.cpp's weights are in its RSS


def test_confirmation_persists_and_the_latest_wins(tmp_path: Path) -> None:
    model = spec("a", GiB)
    FootprintStore(tmp_path).confirm(model, ["runtime"])
    assert FootprintStore(tmp_path).npu_measures == {"rkllm|/models/a.rkllm|1073741824|1": ("runtime",)}
    FootprintStore(tmp_path).confirm(model, [])
    store = FootprintStore(tmp_path)
    store.learn(model, 4096, report(runtime_mb=1400.0))
    assert store.lookup(model, 4096) == (ESTIMATE, False)
    with pytest.raises(ValueError, match="unknown NPU measures"):
        store.confirm(model, ["vmswap"])


def test_a_format_1_store_is_trusted_for_cpu_models_only(tmp_path: Path) -> None:
    cpu, npu = spec("c", GiB, runtime="llamacpp"), spec("n", GiB)
    keys = {m: f"{m.runtime}|{m.path}|{m.size_bytes}|{m.mtime_ns}|ctx=4096" for m in (cpu, npu)}
    (tmp_path / FILE_NAME).write_text(json.dumps({"version": 1, "figures": {keys[cpu]: 1100 * MiB,
                                                                            keys[npu]: 1100 * MiB}}))
    store = FootprintStore(tmp_path)
    assert store.lookup(cpu, 4096) == (1100 * MiB, True)
    assert store.lookup(npu, 4096) == (ESTIMATE, False)  # may be the RSS that missed the NPU buffers


def test_footprint_store_survives_a_corrupt_file(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    assert FootprintStore(tmp_path).figures == {}
    (tmp_path / FILE_NAME).write_text('{"figures": {"k": {"covers_npu": true}}}')
    assert FootprintStore(tmp_path).figures == {}


def entry(runtime: str) -> ModelEntry:
    return ModelEntry(spec("a", GiB, runtime=runtime), 1, "loading", 4096, ESTIMATE, False, 0, 300.0, 0.0)


def test_an_npu_models_estimate_is_raised_but_never_replaced_within_its_incarnation() -> None:
    npu = entry("rkllm")
    npu.measured(report(rss=60 * MiB, runtime_mb=60.0), settled=True)
    assert (npu.bytes, npu.learned) == (ESTIMATE, False)
    npu.measured(report(drop=2 * GiB), settled=True)
    assert npu.bytes == 2 * GiB


def test_a_cpu_models_estimate_is_replaced_once_settled() -> None:
    cpu = entry("llamacpp")
    cpu.measured(report(rss=700 * MiB), settled=False)  # right after load: only raises
    assert cpu.bytes == ESTIMATE
    cpu.measured(report(rss=700 * MiB), settled=True)
    assert (cpu.bytes, cpu.learned) == (700 * MiB, True)
