"""Requests with sampling succeed on every runtime generation (issue 11), with real runners on the sim.

Before: any request with temperature or top_p got "per-request sampling is not supported by runtime
rkllm-1.2.1" on 1.1-1.2.3. Now the loaded sampling applies there and the plan says so; on 1.3.0 it is
applied per run; with ``sampling = "reinit"`` in model.toml the idle model is re-initialized for it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from engine_sim import EngineFactory, SimModels, assert_reply, collect, settle

import simkit
from rkio.engine.types import GenerationRequest
from rkio.runtime.base import Sampling

pytestmark = pytest.mark.timeout(120)

PROMPT = "[[n=4]] warm words"
HOT = replace(Sampling(), temperature=1.3, top_p=0.5, seed=11)


@pytest.fixture(params=simkit.FLAVOURS)
def flavour(request: pytest.FixtureRequest, sim: simkit.SimEnv, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RKIO_RKLLM_LIB", str(simkit.sim_library(str(request.param))))
    monkeypatch.delenv("RKIO_RKLLM_ABI")  # detected from the library, as the runner will
    return str(request.param)


async def test_a_request_with_sampling_and_thinking_succeeds_and_says_what_applied(
        engines: EngineFactory, models: SimModels, flavour: str) -> None:
    models.add("m", 64 << 20)
    engine = await engines()
    gen = GenerationRequest(model="m", prompt=PROMPT, sampling=HOT, max_tokens=3, enable_thinking=True)
    plan = engine.plan(gen)
    reply = await collect(engine, "m", PROMPT, sampling=HOT, max_tokens=3, enable_thinking=True)
    assert_reply(reply, PROMPT, 3)
    per_run = flavour == "1.3.0"
    assert plan.sampling == ("request" if per_run else "loaded")
    expected = ("seed",) if per_run else ("sampling", "seed")  # rkllm has no seed on any generation
    assert plan.not_applied == expected  # thinking is in the rendered template: applied everywhere
    [model] = engine.status().loaded
    assert model.per_request_sampling is per_run and model.sampling == Sampling()


async def test_reinit_policy_loads_the_model_with_the_request_sampling(
        engines: EngineFactory, models: SimModels, flavour: str) -> None:
    models.add("r", 64 << 20, toml='sampling = "reinit"\ntemperature = 0.3\n')
    engine = await engines()
    assert_reply(await collect(engine, "r", PROMPT), PROMPT, 4)
    reply = await collect(engine, "r", PROMPT, sampling=HOT)
    assert_reply(reply, PROMPT, 4)
    await settle(engine, lambda s: bool(s.loaded) and s.loaded[0].state == "idle")
    [model] = engine.status().loaded
    counters = engine.status().counters
    if flavour == "1.3.0":  # per-run sampling: no re-init needed
        assert engine.plan(GenerationRequest(model="r", prompt=PROMPT, sampling=HOT)).sampling == "request"
        assert counters["sampling_reinits"] == 0 and model.sampling.temperature == pytest.approx(0.3)
    else:
        assert engine.plan(GenerationRequest(model="r", prompt=PROMPT, sampling=HOT)).sampling == "reinit"
        assert counters["sampling_reinits"] == 1
        assert model.sampling is not None and model.sampling.temperature == pytest.approx(1.3)
        assert model.sampling_policy == "reinit"
