"""Table tests of the memory planner and the IOMMU domain windows (pure functions)."""

from __future__ import annotations

import pytest

from rkio.engine import domains
from rkio.engine.planner import (
    Admit,
    Evict,
    Need,
    Reject,
    Resident,
    Wait,
    derive_budget,
    estimate_footprint,
    plan_admission,
)
from rkio.units import GiB, MiB

W = domains.WINDOW_BYTES


def r(name: str, gib: float, state: str = "idle", used: float = 0, domain: int | None = 0,
      **kw: object) -> Resident:
    return Resident(name, int(gib * GiB), state, used, domain, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("nbytes", "used", "reserved", "pinned", "expected"), [
    (1 * GiB, [0] * 16, (), None, 0),                              # empty: lowest window
    (1 * GiB, [3 * GiB] + [0] * 15, (), None, 0),                  # small models share a window
    (2 * GiB, [3 * GiB] + [0] * 15, (), None, 1),                  # no room left in window 0
    (1 * GiB, [0] * 16, (0,), None, 1),                            # reserved window skipped
    (6 * GiB, [1] + [0] * 15, (), None, 1),                        # spans 1-2: first windows must be empty
    (6 * GiB, [0, 0, 3 * GiB] + [0] * 13, (), None, 0),            # spills into window 1 of 0-1
    (9 * GiB, [0] * 16, (1,), None, 2),                            # 3 windows, none reserved
    (1 * GiB, [0] * 16, (), 5, 5),                                 # user-pinned domain
    (1 * GiB, [0] * 5 + [W] + [0] * 10, (), 5, None),              # pinned domain is full
    (5 * GiB, [0] * 15 + [0], (), 15, None),                       # would run past window 15
    (1 * GiB, [W] * 16, (), None, None),                           # all full
])
def test_domain_placement(nbytes: int, used: list[int], reserved: tuple[int, ...], pinned: int | None,
                          expected: int | None) -> None:
    assert domains.place(nbytes, used, reserved, pinned) == expected


def test_occupancy_and_span_of_a_large_model() -> None:
    used = domains.occupancy([(2, 9 * GiB), (0, 1 * GiB)])
    assert used[:5] == [1 * GiB, 0, W, W, 1 * GiB]
    assert domains.span(2, 9 * GiB) == (2, 3, 4)


CASES = [
    # (name, residents, need GiB, budget GiB, expected)
    ("fits", [r("a", 2)], 2, 8, Admit(0)),
    ("fits next to, other domain", [r("a", 3.5)], 1, 8, Admit(1)),
    ("evicts least recently used first", [r("old", 3, used=1, domain=0), r("new", 3, used=2, domain=1)], 3, 7,
     Evict(("old",))),
    ("evicts several in LRU order", [r("x", 2, used=3), r("y", 2, used=1, domain=1), r("z", 2, used=2,
                                                                                         domain=2)],
     5, 7, Evict(("y", "z"))),
    ("busy is never evicted: wait", [r("a", 3, state="busy")], 3, 4, Wait),
    ("demand is never evicted: wait", [r("a", 3, demand=True)], 3, 4, Wait),
    ("stopping memory counts until released", [r("a", 3, state="stopping")], 3, 4, Wait),
    ("pinned never evicted", [r("a", 3, pinned=True)], 3, 4, Reject),
    ("leased never evicted", [r("a", 3, leases=1)], 3, 4, Reject),
    ("larger than budget", [], 9, 8, Reject),
    ("no domain room next to pinned", [r(f"p{i}", 4, domain=i, pinned=True) for i in range(16)], 0.5, 100,
     Reject),
]


@pytest.mark.parametrize(("residents", "need", "budget", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_admission(residents: list[Resident], need: float, budget: float, expected: object) -> None:
    plan = plan_admission(Need("t", int(need * GiB)), residents, int(budget * GiB))
    if isinstance(expected, type):
        assert isinstance(plan, expected)
    else:
        assert plan == expected


def test_rejection_message_names_needed_free_and_loaded() -> None:
    plan = plan_admission(Need("big", 3 * GiB), [r("a", 2, pinned=True), r("b", 1, leases=2, domain=1)],
                          4 * GiB)
    assert isinstance(plan, Reject)
    assert plan.message == ("big needs 3.0 GiB but only 1.0 GiB of the 4.0 GiB memory budget is free and "
                            "the rest cannot be evicted; loaded: a 2.0 GiB (pinned), b 1.0 GiB (leased)")


def test_domain_rejection_names_reserved_domains() -> None:
    residents = [r(f"p{i}", 4, domain=i, pinned=True) for i in range(2, 16)]
    plan = plan_admission(Need("t", 1 * GiB), residents, 100 * GiB, reserved_domains=(0, 1))
    assert isinstance(plan, Reject) and "reserved: [0, 1]" in plan.message


def test_cpu_models_ignore_domains() -> None:
    residents = [r(f"p{i}", 4, domain=i, pinned=True) for i in range(16)]
    assert plan_admission(Need("cpu", 1 * GiB, npu=False), residents, 100 * GiB) == Admit(None)


@pytest.mark.parametrize(("configured", "available", "held", "reserve", "expected"), [
    (6 * GiB, 1 * GiB, 0, 512 * MiB, 6 * GiB),
    (None, 8 * GiB, 0, 512 * MiB, 8 * GiB - 512 * MiB),
    (None, 4 * GiB, 2 * GiB, 1 * GiB, 5 * GiB),
    (None, 100 * MiB, 0, 512 * MiB, 0),
])
def test_budget(configured: int | None, available: int, held: int, reserve: int, expected: int) -> None:
    assert derive_budget(configured, available, held, reserve) == expected


def test_estimate_is_conservative_against_published_figures() -> None:
    # rkllm-runtime.md §2.3: Qwen2.5-1.5B w8a8 peaks at 1689 MB; its .rkllm file is about 1.9 GiB.
    assert estimate_footprint(int(1.9 * GiB), 4096) > 1689 * 10**6
    # grows with context: 16k tokens cost more than 4k
    assert estimate_footprint(GiB, 16384) > estimate_footprint(GiB, 4096)
