"""The NPU lane is free only when the NPU is: a client that leaves a generation whose runtime does not stop
(a prefill that runs to its end, a hang that ignores rkllm_abort) holds the lane until the runtime has
returned or its runner is dead, on every path a disconnect takes. Real runners on the simulator."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest
from engine_sim import EngineFactory, SimModels, assert_reply, collect, quiet, request, settle

from rkio.engine.engine import ModelEngine
from rkio.engine.types import TokenChunk

pytestmark = pytest.mark.timeout(120)

PROMPT = "[[n=4]] next in line"


def watch_death(pid: int, loop: asyncio.AbstractEventLoop) -> asyncio.Future[float]:
    """Resolves with the loop time at which ``pid`` died (its pidfd turns readable when it exits)."""
    fd = os.pidfd_open(pid)
    died: asyncio.Future[float] = loop.create_future()

    def exited() -> None:
        loop.remove_reader(fd)
        os.close(fd)
        died.set_result(loop.time())

    loop.add_reader(fd, exited)
    return died


async def first_token_at(engine: ModelEngine, model: str) -> float:
    reply = await collect(engine, model, PROMPT)
    assert_reply(reply, PROMPT, 4)
    assert reply.first_token_at is not None
    return reply.first_token_at


async def read_until_first_token(stream: object, first: asyncio.Event) -> None:
    async for event in stream:  # type: ignore[attr-defined]
        if isinstance(event, TokenChunk):
            first.set()


@pytest.mark.parametrize("hang_at", [0, 2], ids=["before-the-first-token", "mid-stream"])
async def test_a_disconnect_from_a_runtime_that_ignores_abort_holds_the_lane_until_its_runner_dies(
        engines: EngineFactory, models: SimModels, hang_at: int) -> None:
    models.add("hung", 64 << 20, fault=f"hang_at_token:{hang_at}")
    models.add("next", 64 << 20)
    engine = await engines(npu_lanes=1, abort_grace=1.0)
    assert_reply(await collect(engine, "next", PROMPT), PROMPT, 4)  # loaded before the race
    await engine.load("hung")
    [hung_pid] = [m.pid for m in engine.status().loaded if m.name == "hung"]
    assert hung_pid is not None
    loop = asyncio.get_running_loop()
    first = asyncio.Event()
    stream = engine.generate(request("hung", "[[n=50]] x"))
    client = asyncio.create_task(read_until_first_token(stream, first))
    await settle(engine, lambda s: s.running == 1)
    if hang_at:
        await first.wait()
    death = watch_death(hung_pid, loop)
    waiting = asyncio.create_task(first_token_at(engine, "next"))
    await settle(engine, lambda s: s.queue_length == 1)
    client.cancel()  # an HTTP disconnect: the task awaiting the next token is cancelled
    with contextlib.suppress(asyncio.CancelledError):
        await client
    next_first_token = await waiting
    died = await death
    assert died < next_first_token, "the next model ran on the NPU while the hung run was still on it"
    await settle(engine, quiet)
    counters = engine.status().counters
    assert (counters["kills"], counters["crashes"], counters["cancelled"]) == (1, 0, 1)
