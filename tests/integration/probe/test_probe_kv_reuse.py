"""``rkio probe --kv-reuse`` on the simulator: it confirms a runtime whose KV cache holds what rkio assumes,
and catches one that does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from rkio.probe import kv_reuse_check
from rkio.probe.simulated import sim_environment, sim_library, write_sim_model
from rkio.units import GiB, MiB

pytestmark = pytest.mark.timeout(120)


async def run(tmp_path: Path, header: dict[str, str | int]) -> list[kv_reuse_check.TurnCheck]:
    model = write_sim_model(tmp_path / "m.rkllm", 64 * MiB, header)
    env = sim_environment(sim_library("1.2.3"), tmp_path / "sim-state", 16 * GiB, None)
    spec = kv_reuse_check.probe_spec(model, max_new_tokens=64)
    return await kv_reuse_check.check(spec, env=env, turns=4)


async def test_a_runtime_that_keeps_the_conversation_passes(tmp_path: Path) -> None:
    results = await run(tmp_path, {"context_reply": 1})
    assert [r.identical for r in results] == [True] * 4
    assert results[0].reuse_tokens == results[0].fresh_tokens
    assert all(r.reuse_tokens < r.fresh_tokens for r in results[1:])
    assert kv_reuse_check.confirmed(results)
    assert "same greedy replies" in kv_reuse_check.summary(results)


async def test_a_runtime_whose_reply_ignores_the_cache_is_caught(tmp_path: Path) -> None:
    # without context_reply the simulated model answers the new input only: a continued turn differs
    results = await run(tmp_path, {})
    assert results[0].identical and not all(r.identical for r in results[1:])
    assert not kv_reuse_check.confirmed(results)
    assert "kv_reuse = false" in kv_reuse_check.summary(results)


async def test_replies_cut_by_the_limit_are_inconclusive(tmp_path: Path) -> None:
    model = write_sim_model(tmp_path / "m.rkllm", 64 * MiB, {"context_reply": 1})
    env = sim_environment(sim_library("1.2.3"), tmp_path / "sim-state", 16 * GiB, None)
    results = await kv_reuse_check.check(kv_reuse_check.probe_spec(model, max_new_tokens=4), env=env, turns=3)
    assert all(r.identical for r in results) and not kv_reuse_check.confirmed(results)
    assert "Inconclusive" in kv_reuse_check.summary(results)


async def test_a_prompt_cache_that_skips_the_prefill_is_recognised(tmp_path: Path) -> None:
    # 2 ms per prompt token (the model header's value overrides the environment's 0)
    model = write_sim_model(tmp_path / "m.rkllm", 64 * MiB, {"context_reply": 1, "prefill_us": 2000})
    env = sim_environment(sim_library("1.2.3"), tmp_path / "sim-state", 16 * GiB, None)
    spec = kv_reuse_check.probe_spec(model, max_new_tokens=64)
    check = await kv_reuse_check.check_prefix_cache(spec, tmp_path / "caches", env=env)
    assert check.identical and check.speeds_up
    assert check.cached_tokens < check.fresh_tokens
    assert "skips the prefix's prefill" in kv_reuse_check.prefix_summary(check)
