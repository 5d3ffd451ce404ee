"""Admission of vision models: the encoder in domain 0, the LLM never there, never an overcommit."""

from __future__ import annotations

from rkio.engine import planner
from rkio.engine.domains import WINDOW_BYTES
from rkio.engine.planner import Admit, Evict, Need, Reject, Resident, Wait

GiB = 1 << 30
ENCODER = 1_427_746_880  # #195: the Qwen2.5-VL-3B encoder's allocation


def vision_need(llm: int, name: str = "vl", pinned: int | None = None) -> Need:
    return Need(name, llm + ENCODER, True, pinned, encoder_bytes=ENCODER)


def test_alone_the_llm_starts_at_domain_1_and_the_encoder_takes_domain_0() -> None:
    assert planner.plan_admission(vision_need(int(3.48 * GiB)), [], 16 * GiB) == Admit(1)


def test_a_text_model_in_domain_0_leaves_room_or_is_evicted_for_the_encoder() -> None:
    small = Resident("text", 1 * GiB, "idle", 1.0, base_domain=0)
    assert planner.plan_admission(vision_need(2 * GiB), [small], 16 * GiB) == Admit(1)
    big = Resident("text", int(3.5 * GiB), "idle", 1.0, base_domain=0)
    assert planner.plan_admission(vision_need(2 * GiB), [big], 16 * GiB) == Evict(("text",))
    busy = Resident("text", int(3.5 * GiB), "busy", 1.0, base_domain=0)
    assert isinstance(planner.plan_admission(vision_need(2 * GiB), [busy], 16 * GiB), Wait)


def test_a_second_vision_model_shares_domain_0_only_while_both_encoders_fit() -> None:
    first = Resident("vl1", 3 * GiB + ENCODER, "idle", 1.0, base_domain=1, encoder_bytes=ENCODER)
    assert planner.plan_admission(vision_need(2 * GiB, "vl2"), [first], 16 * GiB) == Admit(2)
    fat = Need("vl2", 2 * GiB + 3 * GiB, True, None, encoder_bytes=3 * GiB)
    assert planner.plan_admission(fat, [first], 16 * GiB) == Evict(("vl1",))


def test_a_text_model_next_to_a_vision_model_counts_the_encoder_in_domain_0() -> None:
    vl = Resident("vl", 1 * GiB + ENCODER, "idle", 1.0, base_domain=1, encoder_bytes=ENCODER)
    # 3.5 GiB does not fit beside the encoder's 1.33 GiB in domain 0, nor beside the LLM in 1: domain 2
    assert planner.plan_admission(Need("text", int(3.5 * GiB)), [vl], 16 * GiB) == Admit(2)
    assert planner.plan_admission(Need("text", 2 * GiB), [vl], 16 * GiB) == Admit(0)


def test_pinning_a_vision_llm_to_domain_0_is_rejected() -> None:
    plan = planner.plan_admission(vision_need(GiB, pinned=0), [], 16 * GiB)
    assert isinstance(plan, Reject) and "domain 0" in plan.message


def test_encoder_and_llm_count_against_the_ram_budget_together() -> None:
    # 8 GB board: a 7 GiB LLM fits alone, not with its encoder
    assert planner.plan_admission(Need("text", 7 * GiB), [], 8 * GiB) == Admit(0)
    assert isinstance(planner.plan_admission(vision_need(7 * GiB), [], 8 * GiB), Reject)
    assert planner.plan_admission(vision_need(int(5.5 * GiB)), [], 8 * GiB) == Admit(1)


def test_an_encoder_bigger_than_a_window_never_fits() -> None:
    need = Need("vl", WINDOW_BYTES + GiB + 1, True, None, encoder_bytes=WINDOW_BYTES + 1)
    assert isinstance(planner.plan_admission(need, [], 16 * GiB), Reject)
