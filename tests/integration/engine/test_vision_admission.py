"""Encoder + LLM co-load under 8 GB and 16 GB budgets on the simulators: the planner's placements are the
ones the simulated runtimes accept, the LLM of a vision model never sits in domain 0, and the machine-wide
state file records no overcommit (the sim runs with overcommit = oom, so a mistake would kill a runner)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_sim import EngineFactory, SimModels, collect, configure_sim, quiet, settle
from test_vision import IMAGE_WORD, ask, chat

import simkit
from rkio.engine.engine import ModelEngine
from simkit.vision import add_vision_model, png, sim_rknn_library

pytestmark = pytest.mark.timeout(240)

GiB, MiB = simkit.GiB, simkit.MiB


@pytest.fixture(autouse=True)
def rknn_lib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RKIO_RKNN_LIB", str(sim_rknn_library()))


def check_placements(engine: ModelEngine, sim: simkit.SimEnv) -> dict[str, Any]:
    """What the engine accounts covers what each runner holds; encoders in domain 0, vision LLMs above."""
    state: dict[str, Any] = sim.read_state()
    assert state["overcommits"] == 0 and state["oom_kills"] == [], state["overcommit_log"]
    assert all(used <= simkit.DOMAIN_BYTES for used in state["domain_used"]), state["domain_used"]
    status = engine.status()
    assert status.used_bytes <= status.budget_bytes
    loaded = {m.pid: m for m in status.loaded if m.pid is not None}
    held: dict[int, list[dict[str, Any]]] = {}
    for r in state["reservations"]:
        held.setdefault(r["pid"], []).append(r)
    assert set(held) == set(loaded)
    for pid, model in loaded.items():
        assert model.bytes >= sum(r["bytes"] for r in held[pid]), f"{model.name} accounted below its holding"
        llm = [r for r in held[pid] if r["model"].endswith(".rkllm")]
        encoders = [r for r in held[pid] if r["model"].endswith(".rknn")]
        assert len(llm) == 1 and llm[0]["base_domain"] == model.domains[0]
        if encoders:
            assert set(encoders[0]["domains"]) == {"0"} and llm[0]["base_domain"] >= 1
    return state


@pytest.mark.parametrize("budget", [8 * GiB, 16 * GiB], ids=["8GB", "16GB"])
async def test_vision_and_text_models_share_the_board_without_overcommit(
        models: SimModels, engines: EngineFactory, sim: simkit.SimEnv, monkeypatch: pytest.MonkeyPatch,
        budget: int) -> None:
    configure_sim(sim, monkeypatch, ram=budget)
    add_vision_model(models.root, "vl", llm_bytes=3 * GiB, encoder_bytes=1340 * MiB)
    models.add("big", int(3.5 * GiB))
    models.add("small", 1 * GiB)
    engine = await engines(memory_budget=budget)
    words = []
    for step, (model, image) in enumerate([("big", None), ("vl", (250, 0, 0)), ("small", None),
                                           ("vl", (0, 0, 250)), ("big", None), ("vl", (250, 0, 0))]):
        if image is None:
            reply = await collect(engine, model, f"[[n=3]] step {step}")
        else:
            reply = await ask(engine, model, chat(("what", (png(image),))))
            words.append(set(IMAGE_WORD.findall(reply.text)))
        assert reply.error is None, (budget, step, reply.error)
        await settle(engine, quiet)
        check_placements(engine, sim)
    assert words[0] == words[2] != words[1]
    loaded = {m.name for m in engine.status().loaded}
    if budget == 16 * GiB:
        assert loaded == {"big", "vl", "small"}  # 3.5 + 1 + (3 + 1.3) GiB and their KV fit side by side
    else:
        assert "vl" in loaded and len(loaded) < 3  # 8 GB: someone had to be evicted


async def test_a_vision_model_larger_than_the_budget_with_its_encoder_is_refused(
        models: SimModels, engines: EngineFactory, sim: simkit.SimEnv, tmp_path: Path) -> None:
    add_vision_model(models.root, "vl", llm_bytes=int(6.8 * GiB), encoder_bytes=1340 * MiB)
    engine = await engines()
    reply = await ask(engine, "vl", chat(("what", (png((1, 1, 1)),))))
    assert reply.error is not None and "needs" in reply.error.message
    assert sim.read_state()["overcommits"] == 0
