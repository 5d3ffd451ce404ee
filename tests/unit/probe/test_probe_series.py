"""The probe's series and findings on a fake board: what a user of ``rkio probe`` would read back."""

from __future__ import annotations

import pytest
from probe_fakeboard import FakeBoard

from rkio.probe.diagnose import Finding, diagnose
from rkio.probe.outcomes import Outcome
from rkio.probe.plan import PairMode, ProbeConfig, ProbeModel
from rkio.probe.run import Prober
from rkio.units import GiB, MiB


def model(size: int) -> ProbeModel:
    # The fake board reads the size back from the path's last "-" field.
    return ProbeModel(f"m{size // MiB}", f"/models/m-{size}", size)


def probe(board: FakeBoard, *sizes: int, margin: int = 0, believed_free: int | None = None) -> Prober:
    config = ProbeConfig(models=tuple(model(s) for s in sizes), margin_bytes=margin)
    gauge = board.gauge if believed_free is None else (lambda _resident: believed_free)
    prober = Prober(config, spawn=board.spawn, gauge=gauge)
    prober.run()
    return prober


def findings(prober: Prober) -> set[tuple[Finding, str, str]]:
    return {(d.finding, d.first, d.second) for d in diagnose(prober.pairs)}


def test_small_models_coload_in_every_mode_without_findings() -> None:
    prober = probe(FakeBoard(), 1 * GiB, 1536 * MiB)
    assert [s.outcome for s in prober.solos] == [Outcome.OK, Outcome.OK]
    assert {p.mode for p in prober.pairs} == set(PairMode)
    assert all(p.outcome is Outcome.OK for p in prober.pairs)
    assert diagnose(prober.pairs) == []
    assert prober.solos[0].footprint_bytes == 1 * GiB


def test_ladder_runs_smallest_first_and_stops_at_the_first_model_that_fails_alone() -> None:
    board = FakeBoard(ram=4 * GiB, overcommit="fail")
    prober = probe(board, 5 * GiB, 1 * GiB, 3 * GiB, believed_free=64 * GiB)  # 5 GiB > the board's RAM
    assert [s.model.size_bytes for s in prober.solos] == [1 * GiB, 3 * GiB, 5 * GiB]
    assert prober.solos[-1].outcome is Outcome.REFUSED
    assert any("ladder stopped at m5120" in reason for reason in prober.stopped)


def test_large_plus_small_sharing_a_domain_is_a_domain_problem_fixed_by_distinct_domains() -> None:
    prober = probe(FakeBoard(overcommit="fail"), 1536 * MiB, 3 * GiB)
    by_mode = {p.mode: p for p in prober.pairs}
    assert by_mode[PairMode.SAME_DOMAIN].outcome is Outcome.REFUSED
    assert by_mode[PairMode.DISTINCT_DOMAINS].outcome is Outcome.OK
    assert by_mode[PairMode.SAME_DOMAIN].steps[1].detail == "E rkllm: failed to malloc npu memory"
    assert (Finding.DOMAIN_PROBLEM, "m3072", "m1536") in findings(prober)
    # the refused second load left the first model running and answering correctly
    assert by_mode[PairMode.SAME_DOMAIN].first_survived_second_load


def test_garbage_from_a_shared_domain_is_reported_as_corruption() -> None:
    prober = probe(FakeBoard(overcommit="garbage"), 1536 * MiB, 3 * GiB)
    same = next(p for p in prober.pairs if p.mode is PairMode.SAME_DOMAIN)
    assert same.outcome is Outcome.CORRUPTION
    assert [s.outcome for s in same.steps if s.action == "load"] == [Outcome.OK, Outcome.OK]
    assert (Finding.DOMAIN_PROBLEM, "m3072", "m1536") in findings(prober)


def test_two_handles_in_one_process_broken_while_two_processes_work() -> None:
    prober = probe(FakeBoard(multi_handle_broken=True), 1 * GiB, 1536 * MiB)
    one = next(p for p in prober.pairs if p.mode is PairMode.ONE_PROCESS)
    assert one.outcome is Outcome.CORRUPTION
    assert findings(prober) == {(Finding.MULTI_HANDLE, "m1536", "m1024")}


def test_oom_kill_of_the_first_model_is_killed_and_collateral() -> None:
    prober = probe(FakeBoard(overcommit="oom"), 1536 * MiB, 3 * GiB)
    same = next(p for p in prober.pairs if p.mode is PairMode.SAME_DOMAIN)
    # pairs load the larger first; the OOM killer takes the largest process: the resident 3 GiB model
    assert [s.outcome for s in same.steps] == [Outcome.OK, Outcome.OK, Outcome.KILLED, Outcome.OK]
    assert not same.first_survived_second_load
    assert (Finding.COLLATERAL, "m3072", "m1536") in findings(prober)


def test_segfault_of_a_second_handle_takes_the_first_down_in_one_process() -> None:
    # RAM overcommit the guard did not foresee (its reading says 64 GiB free): the children absorb it
    board = FakeBoard(ram=4 * GiB, overcommit="segv")
    prober = probe(board, 1536 * MiB, 3 * GiB, believed_free=64 * GiB)
    one = next(p for p in prober.pairs if p.mode is PairMode.ONE_PROCESS)
    assert one.outcome is Outcome.CRASHED
    assert not one.first_survived_second_load
    assert (Finding.COLLATERAL, "m3072", "m1536") in findings(prober)
    two = next(p for p in prober.pairs if p.mode is PairMode.SAME_DOMAIN)
    assert two.first_survived_second_load  # a separate process kept the first model alive


def test_the_guard_skips_a_load_that_would_eat_into_the_margin_and_never_attempts_it() -> None:
    board = FakeBoard(ram=4 * GiB)
    prober = probe(board, 1 * GiB, 2 * GiB, margin=1536 * MiB)
    # solo 2 GiB fits (4 - 1.5 >= 2.4 estimate); the pair 1 + 2 GiB would eat into the margin
    assert [s.outcome for s in prober.solos] == [Outcome.OK, Outcome.OK]
    assert all(p.outcome is Outcome.SKIPPED for p in prober.pairs)
    assert board.loads == 2 + len(prober.pairs)  # every pair loaded its first model only
    assert "needs ~1.0 GiB" in prober.pairs[0].steps[1].detail


def test_guard_uses_file_size_times_1_2_before_a_model_was_measured() -> None:
    board = FakeBoard(ram=3 * GiB)
    prober = probe(board, 2 * GiB, margin=1 * GiB)  # 2.4 GiB estimate > 3 - 1
    assert prober.solos[0].outcome is Outcome.SKIPPED
    assert board.loads == 0


@pytest.mark.parametrize("modes", [(PairMode.SAME_DOMAIN,), (PairMode.ONE_PROCESS, PairMode.SAME_DOMAIN)])
def test_only_requested_modes_run_and_a_failed_mode_stops_its_series(modes: tuple[PairMode, ...]) -> None:
    board = FakeBoard(overcommit="fail")
    sizes = (1 * GiB, 1536 * MiB, 3584 * MiB)
    config = ProbeConfig(models=tuple(model(s) for s in sizes), margin_bytes=0, pair_modes=modes)
    prober = Prober(config, spawn=board.spawn, gauge=board.gauge)
    prober.run()
    assert {p.mode for p in prober.pairs} == set(modes)
    same = [p for p in prober.pairs if p.mode is PairMode.SAME_DOMAIN]
    # pairs run by combined size: 1+1.5 ok, 1+3.5 > 4 GiB refused, then same-domain stops (1.5+3.5 not tried)
    assert [(p.first.name, p.second.name, p.outcome) for p in same] == [
        ("m1536", "m1024", Outcome.OK), ("m3584", "m1024", Outcome.REFUSED)]


def test_distinct_domain_skips_past_every_domain_a_large_first_model_spans() -> None:
    board = FakeBoard(ram=32 * GiB)
    # the first (larger) model needs two 4 GiB windows (0 and 1), so "different" starts at 2
    prober = probe(board, 1 * GiB, 5 * GiB)
    distinct = next(p for p in prober.pairs if p.mode is PairMode.DISTINCT_DOMAINS)
    assert [s.domain for s in distinct.steps if s.action == "load"] == [0, 2]


def test_a_same_domain_failure_without_the_distinct_mode_says_how_to_tell() -> None:
    board = FakeBoard(overcommit="fail")
    config = ProbeConfig(models=(model(1536 * MiB), model(3 * GiB)), margin_bytes=0,
                         pair_modes=(PairMode.SAME_DOMAIN,))
    prober = Prober(config, spawn=board.spawn, gauge=board.gauge)
    prober.run()
    (diagnosis,) = diagnose(prober.pairs)
    assert diagnosis.finding is Finding.UNEXPLAINED
    assert "add the 'distinct' mode" in diagnosis.evidence
