"""RunnerProcess hands token chunks to a consumer's push (rkio.engine.chunk_push) from the pipe's read
callback: the reply stays whole and in order whichever way each chunk goes, and a broken push costs only
the fast path."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import simkit
from rkio.engine.runner import RunnerProcess
from rkio.engine.runner.messages import RunnerDone, RunnerGeneration
from rkio.engine.types import ModelSpec, TokenChunk
from rkio.errors import RunnerCrashed
from rkio.runtime.base import GenerateParams

pytestmark = pytest.mark.timeout(60)

SpecMaker = Callable[..., ModelSpec]


async def _start(spec: ModelSpec, env: dict[str, str], runners: list[RunnerProcess]) -> RunnerProcess:
    runner = await RunnerProcess.start(spec, spec.load, env=env)
    runners.append(runner)
    return runner


async def _reply(runner: RunnerProcess, prompt: str, push: Callable[[TokenChunk], bool],
                 arrived: list[tuple[str, str]]) -> RunnerDone:
    done = None
    gen = RunnerGeneration(params=GenerateParams(prompt=prompt))
    async for item in runner.generate(gen, push):
        if isinstance(item, TokenChunk):
            assert done is None, "tokens after RunnerDone"
            arrived.append(("yielded", item.text))
        else:
            done = item
    assert done is not None
    return done


async def test_pushed_and_yielded_chunks_make_the_reply_in_order(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    # a token every 2 ms: each is a frame of its own, most arrive while the consumer waits
    runner = await _start(make_spec(token_us=2000), sim_env, runners)
    arrived: list[tuple[str, str]] = []
    offers = 0

    def push(chunk: TokenChunk) -> bool:
        nonlocal offers
        offers += 1
        if offers % 3 == 0:
            return False  # a slow client now and then: this chunk and what follows go the long way
        arrived.append(("pushed", chunk.text))
        return True

    prompt = "[[n=60]] the quick brown fox"
    done = await _reply(runner, prompt, push, arrived)
    assert "".join(text for _, text in arrived) == "".join(simkit.expected_reply(prompt, 60))
    assert (done.finish, done.completion_tokens) == ("stop", 60)
    ways = {way for way, _ in arrived}
    assert ways == {"pushed", "yielded"}


async def test_a_push_that_raises_leaves_the_iterator_to_deliver_everything(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    runner = await _start(make_spec(token_us=2000), sim_env, runners)
    calls = 0

    def push(chunk: TokenChunk) -> bool:
        nonlocal calls
        calls += 1
        raise RuntimeError("broken consumer")

    arrived: list[tuple[str, str]] = []
    prompt = "[[n=20]] alpha beta"
    await _reply(runner, prompt, push, arrived)
    assert "".join(text for _, text in arrived) == "".join(simkit.expected_reply(prompt, 20))
    assert calls == 1  # offered once, then never again in that generation
    # the runner and its pipe are fine: the next request is served, pushes and all
    pushed: list[tuple[str, str]] = []
    await _reply(runner, "[[n=5]] next", lambda c: pushed.append(("pushed", c.text)) is None, pushed)
    assert "".join(text for _, text in pushed) == "".join(simkit.expected_reply("[[n=5]] next", 5))


async def test_a_crash_while_chunks_are_pushed_ends_the_stream_with_the_crash(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    runner = await _start(make_spec(token_us=2000, fault="segv_at_token:5"), sim_env, runners)
    arrived: list[tuple[str, str]] = []
    prompt = "[[n=20]] a b c"
    with pytest.raises(RunnerCrashed, match="crashed with SIGSEGV during generation"):
        await _reply(runner, prompt, lambda c: arrived.append(("pushed", c.text)) is None, arrived)
    # what came before the crash came whole and in order, through the push
    assert "".join(text for _, text in arrived) == "".join(simkit.expected_reply(prompt, 5))
    assert {way for way, _ in arrived} == {"pushed"}
