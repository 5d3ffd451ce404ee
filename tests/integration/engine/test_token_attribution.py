"""Many concurrent clients through one engine: each gets exactly its own generation's tokens, in order."""

from __future__ import annotations

import asyncio

import pytest
from engine_sim import (
    EngineFactory,
    SimModels,
    assert_reply,
    check_memory_truth,
    collect,
    quiet,
    request,
    settle,
)

from rkio.engine.types import TokenChunk

pytestmark = pytest.mark.timeout(120)

CLIENTS = 40


def prompt_of(i: int) -> tuple[str, int]:
    """A prompt whose echo words name client ``i`` (so a token in the wrong reply is visible)."""
    n = 3 + i % 9
    return f"[[n={n}]] client{i} w{i}a w{i}b w{i}c", n


@pytest.mark.parametrize(("n_models", "lanes"), [(1, 1), (2, 1), (2, 2)])
async def test_concurrent_clients_get_their_own_tokens(engines: EngineFactory, models: SimModels, sim,
                                                       n_models: int, lanes: int) -> None:
    names = [f"m{k}" for k in range(n_models)]
    for name in names:
        models.add(name, 64 << 20)
    engine = await engines(npu_lanes=lanes)
    jobs = [(names[i % n_models], *prompt_of(i)) for i in range(CLIENTS)]
    replies = await asyncio.gather(*(collect(engine, model, prompt) for model, prompt, _ in jobs))
    for (_, prompt, n), reply in zip(jobs, replies, strict=True):
        assert_reply(reply, prompt, n)
    await settle(engine, quiet)
    status = engine.status()
    assert status.counters["completed"] == CLIENTS
    assert status.counters["loads"] == n_models  # every model loaded once, none reloaded
    assert status.counters["failed"] == status.counters["crashes"] == 0
    check_memory_truth(engine, sim)


async def test_clients_leaving_early_do_not_disturb_the_others(engines: EngineFactory, models: SimModels,
                                                              sim) -> None:
    """Half the clients stop reading after their first chunk; the rest still get exact replies."""
    models.add("m0", 64 << 20)
    engine = await engines()

    async def leave_early(prompt: str) -> None:
        stream = engine.generate(request("m0", prompt))
        async for event in stream:
            if isinstance(event, TokenChunk):
                break
        await stream.aclose()

    jobs = [prompt_of(i) for i in range(20)]
    work = [collect(engine, "m0", p) if i % 2 == 0 else leave_early(f"[[n=500]] {p}")
            for i, (p, _) in enumerate(jobs)]
    results = await asyncio.gather(*work)
    for i, ((prompt, n), reply) in enumerate(zip(jobs, results, strict=True)):
        if i % 2 == 0:
            assert_reply(reply, prompt, n)
    await settle(engine, quiet)
    counters = engine.status().counters
    assert (counters["completed"], counters["cancelled"], counters["loads"]) == (10, 10, 1)
    check_memory_truth(engine, sim)
