"""``rkio probe`` against the simulator: each simulated failure must come back under its right name."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rkio.cli import probe as probe_cli
from rkio.engine.footprints import FootprintStore
from rkio.probe.coverage import npu_coverage
from rkio.probe.diagnose import Finding, diagnose
from rkio.probe.engine_scenario import replay
from rkio.probe.learned import spec_of
from rkio.probe.outcomes import Outcome
from rkio.probe.plan import PairMode
from rkio.probe.run import Prober
from rkio.units import GiB, MiB

RunProbe = Callable[..., Prober]  # the run_probe fixture (tests/integration/probe/conftest.py)
SMALL, MEDIUM, LARGE = 1 * GiB, 1536 * MiB, 3 * GiB
SAME, DISTINCT, ONE = PairMode.SAME_DOMAIN, PairMode.DISTINCT_DOMAINS, PairMode.ONE_PROCESS


def by_mode(prober: object) -> dict[PairMode, object]:
    return {p.mode: p for p in prober.pairs}  # type: ignore[attr-defined]


def findings(prober: object) -> set[tuple[Finding, str, str]]:
    return {(d.finding, d.first, d.second) for d in diagnose(prober.pairs)}  # type: ignore[attr-defined]


def test_large_and_medium_in_one_domain_is_refused_and_named_a_domain_problem(run_probe: RunProbe) -> None:
    prober = run_probe("1.2.3", MEDIUM, LARGE, overcommit="fail")
    assert [s.outcome for s in prober.solos] == [Outcome.OK, Outcome.OK]
    # the simulator charges file + 28 KiB/token x 512 + 256 MiB buffer, as memory_usage_mb reports
    assert prober.solos[0].footprint_bytes == MEDIUM + 512 * 28 * 1024 + 256 * MiB
    modes = by_mode(prober)
    same = modes[SAME]
    assert same.outcome is Outcome.REFUSED  # type: ignore[attr-defined]
    assert "failed to malloc npu memory" in same.steps[1].detail  # type: ignore[attr-defined]
    assert same.first_survived_second_load  # type: ignore[attr-defined]
    assert modes[DISTINCT].outcome is Outcome.OK and modes[ONE].outcome is Outcome.OK  # type: ignore[attr-defined]
    assert findings(prober) == {(Finding.DOMAIN_PROBLEM, "m3072", "m1536")}


def test_garbage_overcommit_is_detected_as_corruption(run_probe: RunProbe) -> None:
    prober = run_probe("1.2.3", MEDIUM, LARGE, overcommit="garbage", modes=(SAME, DISTINCT))
    same = by_mode(prober)[SAME]
    assert same.outcome is Outcome.CORRUPTION  # type: ignore[attr-defined]
    second_reply = same.steps[-1]  # type: ignore[attr-defined]
    assert second_reply.outcome is Outcome.CORRUPTION and "&&&&" in (second_reply.text or "")
    assert (Finding.DOMAIN_PROBLEM, "m3072", "m1536") in findings(prober)


@pytest.mark.parametrize(("flavour", "broken"), [("1.2.1", True), ("1.2.3", False)])
def test_two_handles_in_one_process_break_before_1_2_2_only(run_probe: RunProbe, flavour: str,
                                                           broken: bool) -> None:
    prober = run_probe(flavour, SMALL, MEDIUM, modes=(DISTINCT, ONE))
    one = by_mode(prober)[ONE]
    assert (one.outcome is Outcome.CORRUPTION) is broken  # type: ignore[attr-defined]
    expected = {(Finding.MULTI_HANDLE, "m1536", "m1024")} if broken else set()
    assert findings(prober) == expected


def test_oom_overcommit_kills_the_largest_process_which_is_the_resident_first_model(
        run_probe: RunProbe) -> None:
    prober = run_probe("1.2.3", MEDIUM, LARGE, overcommit="oom", modes=(SAME, DISTINCT))
    same = by_mode(prober)[SAME]
    assert not same.first_survived_second_load  # type: ignore[attr-defined]
    first_reply = next(s for s in same.steps if s.action == "generate")  # type: ignore[attr-defined]
    assert first_reply.outcome is Outcome.KILLED and "SIGKILL" in first_reply.detail
    assert (Finding.COLLATERAL, "m3072", "m1536") in findings(prober)
    assert (Finding.DOMAIN_PROBLEM, "m3072", "m1536") in findings(prober)


def test_segv_on_failed_init_crashes_only_the_loading_process(run_probe: RunProbe) -> None:
    prober = run_probe("1.3.0", MEDIUM, LARGE, modes=(SAME, ONE))  # 1.3.0 segfaults by default (#522)
    modes = by_mode(prober)
    same = modes[SAME]
    assert same.steps[1].outcome is Outcome.CRASHED and "SIGSEGV" in same.steps[1].detail  # type: ignore[attr-defined]
    assert same.first_survived_second_load  # type: ignore[attr-defined]
    assert modes[ONE].outcome is Outcome.OK  # distinct domains in one process: no overcommit at all


def test_guard_never_loads_past_free_ram_minus_margin(run_probe: RunProbe, tmp_path: Path) -> None:
    prober = run_probe("1.2.3", SMALL, LARGE, ram=4 * GiB, margin=512 * MiB, modes=(DISTINCT,))
    # 3 GiB x 1.2 estimate > 4 GiB - 0.5 GiB: skipped, and the simulator saw no overcommit at all
    assert [s.outcome for s in prober.solos] == [Outcome.OK, Outcome.SKIPPED]
    assert prober.pairs == []
    state = (tmp_path / "sim-state").read_text()
    assert "overcommits 0" in state


@pytest.mark.parametrize(("flavour", "npu_memory", "measures"), [
    ("1.2.3", "ledger", ("runtime",)),  # memory_usage_mb reports the whole footprint
    ("1.1.4", "ledger", ()),            # no memory_usage_mb before 1.2.1, and RSS misses the buffers
    ("1.2.3", "dma", ()),               # memory_usage_mb is VmHWM, and the buffers are outside RSS
])
def test_the_probe_records_which_measure_includes_the_npu_buffers(
        run_probe: RunProbe, flavour: str, npu_memory: str, measures: tuple[str, ...]) -> None:
    size, header = 64 * MiB, {"buffer_bytes": 16 * MiB}  # small: the dma mode really allocates it
    prober = run_probe(flavour, size, header=header, npu_memory=npu_memory, modes=())
    (solo,) = prober.solos
    coverage = npu_coverage(solo.steps, size)
    held = size + 512 * 28 * 1024 + 16 * MiB
    assert coverage.drop_bytes == held  # the simulated machine's MemAvailable
    assert coverage.measures == measures
    assert solo.footprint_bytes == held  # the drop catches what the other measures miss


def test_a_hung_generation_is_killed_at_the_step_timeout(run_probe: RunProbe) -> None:
    prober = run_probe("1.2.3", SMALL, header={"fault": "hang_at_token:2"}, timeout=1.0)
    solo = prober.solos[0]
    assert [s.outcome for s in solo.steps] == [Outcome.OK, Outcome.HUNG]


def test_cli_simulate_writes_report_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="rkio")
    probe_cli.register(parser.add_subparsers())
    args = parser.parse_args(["probe", "--simulate", "1.2.3", "--sim-models", "1.5G,3G", "--modes",
                              "same,distinct", "--sim-overcommit", "fail", "--out", str(tmp_path / "out"),
                              "--save-footprints", "--state-dir", str(tmp_path / "state")])
    assert args.func(args) == 0
    report = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert [f["finding"] for f in report["findings"]] == ["domain problem"]
    assert {r["model"] for r in report["footprints"]} == {"sim-1.5g", "sim-3g"}
    out = capsys.readouterr().out
    assert "domain problem: sim-3g + sim-1.5g" in out
    assert "| sim-1.5g | ok | 1806 |" in out and "runtime (memory_usage_mb)" in out
    # the server's store now knows the measured figure instead of its estimate, and that the runtime's
    # memory_usage_mb includes the NPU buffers of both model files
    record = next(r for r in report["footprints"] if r["model"] == "sim-1.5g")
    store = FootprintStore(tmp_path / "state")
    assert store.lookup(spec_of(record), 512) == (1806 * MiB, True)
    assert sorted(store.npu_measures.values()) == [("runtime",), ("runtime",)]


def test_import_footprints_from_a_board_report(tmp_path: Path) -> None:
    records = []
    for name, extra in (("old", {}), ("new", {"covers_npu": True, "npu_measures": ["runtime"]})):
        model = tmp_path / f"{name}.rkllm"
        model.write_bytes(b"x")
        records.append({"model": name, "path": str(model), "size_bytes": 1,
                        "mtime_ns": model.stat().st_mtime_ns, "max_context_len": 4096, "bytes": 1_800_000_000,
                        "source": "rkio probe", **extra})
    (tmp_path / "probe.json").write_text(json.dumps({"footprints": records}))
    parser = argparse.ArgumentParser(prog="rkio")
    probe_cli.register(parser.add_subparsers())
    args = parser.parse_args(["probe", "--import-footprints", str(tmp_path / "probe.json"),
                              "--state-dir", str(tmp_path / "state")])
    assert args.func(args) == 0
    store = FootprintStore(tmp_path / "state")
    old, new = (spec_of(r) for r in records)
    # a report_version 1 record does not say it includes the NPU buffers: it only raises the estimate
    assert store.lookup(old, 4096) == (1_800_000_000, False)
    assert store.lookup(new, 4096) == (1_800_000_000, True)
    assert store.npu_measures == {f"rkllm|{new.path}|1|{new.mtime_ns}": ("runtime",)}


def test_engine_scenario_places_the_pair_in_separate_domains_without_overcommit(tmp_path: Path) -> None:
    rows = asyncio.run(replay("1.2.3", 16 * GiB, "oom", tmp_path))
    assert [row[2] for row in rows] == ["ok (length)"] * 3
    # large keeps its estimate (two windows from 0: nothing confirmed its measures); small goes to window 1
    assert "large domains [0, 1]" in rows[1][3] and "small domains [1]" in rows[1][3]
    assert [(row[5], row[6]) for row in rows] == [("0", "0")] * 3  # no overcommit, nobody OOM-killed


def test_engine_scenario_evicts_within_a_small_budget_instead_of_crashing(tmp_path: Path) -> None:
    rows = asyncio.run(replay("1.2.3", 5 * GiB, "oom", tmp_path))
    assert [row[2] for row in rows] == ["ok (length)"] * 3
    assert [row[4] for row in rows] == ["0", "1", "2"]
    assert all(row[5] == "0" for row in rows)
