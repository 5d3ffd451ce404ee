"""A GGUF model on the CPU runtime beside an rkllm model on the (simulated) NPU, under one engine and one
memory budget: the GGUF runner's real memory is learned after a generation and decides the next
admission, so both fit where the first estimate would have needed an eviction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from engine_sim import SimModels, assert_reply, child_pids, collect, quiet, settle, start_engine

import simkit
from rkio.engine.footprints import FILE_NAME

pytestmark = pytest.mark.timeout(180)

MiB = simkit.MiB
NPU_PROMPT = "[[n=5]] from the npu"
REPO = Path(__file__).resolve().parents[3]


def gemma_into(models: SimModels) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'rkio[cpu]'")
    from rkio.models.default import NAME, ModelPackageMissing, install_default_model

    try:
        installed = install_default_model(REPO / "build" / "models")
    except ModelPackageMissing as exc:
        pytest.skip(exc.message)
    shutil.copytree(installed.path.parent, models.root / NAME)


async def test_gguf_footprint_is_learned_and_lets_both_runtimes_share_the_budget(
        models: SimModels, sim: simkit.SimEnv, tmp_path: Path) -> None:
    gemma_into(models)
    models.add("npu", 64 * MiB)
    state_dir = tmp_path / "state"
    before = child_pids()

    first = await start_engine(models.root, state_dir, sim)
    try:
        await first.load("gemma3-270m")
        estimate = {m.name: m.bytes for m in first.status().loaded}["gemma3-270m"]
        reply = await collect(first, "gemma3-270m", "The capital of France is", raw=True, max_tokens=4)
        assert reply.error is None and reply.text.strip(), reply
        assert_reply(await collect(first, "npu", NPU_PROMPT), NPU_PROMPT, 5)
        await settle(first, quiet)
        loaded = {m.name: m for m in first.status().loaded}
        assert {m.runtime for m in loaded.values()} == {"llamacpp", "rkllm"}  # side by side
        learned, npu = loaded["gemma3-270m"].bytes, loaded["npu"].bytes
        assert loaded["gemma3-270m"].rss_bytes is not None
        assert 100 * MiB < learned < estimate  # the runner's real RSS, below the cautious estimate
    finally:
        await first.stop(grace=1.0)
    figures = json.loads((state_dir / FILE_NAME).read_text())["figures"]
    assert any(key.startswith("llamacpp|") and value["bytes"] == learned for key, value in figures.items())

    # a budget that holds both by the learned figures, but not by the GGUF's first estimate
    budget = learned + npu + 32 * MiB
    assert budget < estimate + npu
    second = await start_engine(models.root, state_dir, sim, memory_budget=budget)
    try:
        await second.load("gemma3-270m")
        await second.load("npu")
        await settle(second, quiet)
        status = second.status()
        assert {m.name: m.bytes for m in status.loaded} == {"gemma3-270m": learned, "npu": npu}
        assert status.counters["evictions"] == 0
        assert_reply(await collect(second, "npu", NPU_PROMPT), NPU_PROMPT, 5)
    finally:
        await second.stop(grace=1.0)
    assert sim.read_state()["overcommits"] == 0
    assert child_pids() == before
