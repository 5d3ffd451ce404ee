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
from rkio.models.catalog import DEFAULT

NAME = DEFAULT.name  # the default CPU model (SmolLM2 135M Instruct, ~94 MiB)

pytestmark = pytest.mark.timeout(180)

MiB = simkit.MiB
NPU_PROMPT = "[[n=5]] from the npu"
REPO = Path(__file__).resolve().parents[3]


def default_model_into(models: SimModels) -> None:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'rkio[cpu]'")
    from rkio.models.default import ModelPackageMissing, install_default_model

    try:
        installed = install_default_model(REPO / "build" / "models")
    except ModelPackageMissing as exc:
        pytest.skip(exc.message)
    shutil.copytree(installed.path.parent, models.root / NAME)


async def test_gguf_footprint_is_learned_and_lets_both_runtimes_share_the_budget(
        models: SimModels, sim: simkit.SimEnv, tmp_path: Path) -> None:
    default_model_into(models)
    models.add("npu", 64 * MiB)
    state_dir = tmp_path / "state"
    before = child_pids()

    first = await start_engine(models.root, state_dir, sim)
    try:
        await first.load(NAME)
        estimate = {m.name: m.bytes for m in first.status().loaded}[NAME]
        reply = await collect(first, NAME, "The capital of France is", raw=True, max_tokens=4)
        assert reply.error is None and reply.text.strip(), reply
        assert_reply(await collect(first, "npu", NPU_PROMPT), NPU_PROMPT, 5)
        await settle(first, quiet)
        loaded = {m.name: m for m in first.status().loaded}
        assert {m.runtime for m in loaded.values()} == {"llamacpp", "rkllm"}  # side by side
        learned, npu = loaded[NAME].bytes, loaded["npu"].bytes
        assert loaded[NAME].rss_bytes is not None
        assert 60 * MiB < learned < estimate  # the runner's real RSS, below the cautious estimate
    finally:
        await first.stop(grace=1.0)
    figures = json.loads((state_dir / FILE_NAME).read_text())["figures"]
    assert any(key.startswith("llamacpp|") and value["bytes"] == learned for key, value in figures.items())

    # a budget that holds both by the learned figures, but not by the GGUF's first estimate
    budget = learned + npu + 32 * MiB
    assert budget < estimate + npu
    second = await start_engine(models.root, state_dir, sim, memory_budget=budget)
    try:
        await second.load(NAME)
        await second.load("npu")
        await settle(second, quiet)
        status = second.status()
        assert {m.name: m.bytes for m in status.loaded} == {NAME: learned, "npu": npu}
        assert status.counters["evictions"] == 0
        assert_reply(await collect(second, "npu", NPU_PROMPT), NPU_PROMPT, 5)
    finally:
        await second.stop(grace=1.0)
    assert sim.read_state()["overcommits"] == 0
    assert child_pids() == before
