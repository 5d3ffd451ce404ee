"""RunnerProcess with real runner processes on the simulator: output, crashes, hangs, stalls, stop."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from dataclasses import replace

import pytest

import simkit
from rkio.engine.runner import RunnerProcess
from rkio.engine.runner.messages import RunnerDone, RunnerGeneration
from rkio.engine.types import ChatMessage, ModelSpec, TokenChunk
from rkio.errors import ContextLengthExceeded, LoadFailed, RunnerCrashed
from rkio.runtime.base import GenerateParams

pytestmark = pytest.mark.timeout(60)

SpecMaker = Callable[..., ModelSpec]


async def start(spec: ModelSpec, env: dict[str, str], runners: list[RunnerProcess],
                load_timeout: float = 30.0) -> RunnerProcess:
    runner = await RunnerProcess.start(spec, spec.load, env=env, load_timeout=load_timeout)
    runners.append(runner)
    return runner


async def collect(runner: RunnerProcess, prompt: str, **kw: object) -> tuple[str, RunnerDone]:
    text = []
    done = None
    async for item in runner.generate(RunnerGeneration(params=GenerateParams(prompt=prompt), **kw)):  # type: ignore[arg-type]
        if isinstance(item, TokenChunk):
            assert done is None, "tokens after RunnerDone"
            text.append(item.text)
        else:
            done = item
    assert done is not None
    return "".join(text), done


def reply(prompt: str, n: int) -> str:
    return "".join(simkit.expected_reply(prompt, n))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_generation_matches_the_simulator_oracle(make_spec: SpecMaker, sim_env: dict[str, str],
                                                        runners: list[RunnerProcess]) -> None:
    runner = await start(make_spec(), sim_env, runners)
    assert runner.runtime_name.startswith("rkllm-")
    loaded = runner.memory()
    assert loaded is not None and loaded.rss_bytes > 0
    prompt = "[[n=40]] the quick brown fox"
    text, done = await collect(runner, prompt)
    assert text == reply(prompt, 40)
    assert (done.finish, done.completion_tokens) == ("stop", 40)
    assert done.prompt_tokens > 0
    assert done.memory is not None and done.memory.rss_bytes > 0
    assert runner.memory() == done.memory
    # the same runner serves the next request
    text, _ = await collect(runner, "[[n=3]] again")
    assert text == reply("[[n=3]] again", 3)


async def test_stop_string_ends_the_reply_before_it(make_spec: SpecMaker, sim_env: dict[str, str],
                                                    runners: list[RunnerProcess]) -> None:
    runner = await start(make_spec(), sim_env, runners)
    prompt = "[[n=30]] alpha beta gamma delta"
    full = reply(prompt, 30)
    cut = full.index("gamma")
    text, done = await collect(runner, prompt, stop=("gamma",))
    assert (text, done.finish) == (full[:cut], "stop")


async def test_chat_messages_are_rendered_in_the_runner(make_spec: SpecMaker, sim_env: dict[str, str],
                                                        runners: list[RunnerProcess]) -> None:
    runner = await start(make_spec(), sim_env, runners)
    gen = RunnerGeneration(params=GenerateParams(), messages=(ChatMessage("user", "[[n=4]] ping pong"),))
    items = [item async for item in runner.generate(gen)]
    text = "".join(i.text for i in items if isinstance(i, TokenChunk))
    assert "ping" in text and "<|im_start|>" not in text
    assert isinstance(items[-1], RunnerDone) and items[-1].completion_tokens == 4


async def test_prompt_longer_than_the_context_is_refused_and_the_runner_lives_on(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    spec = make_spec()
    runner = await RunnerProcess.start(spec, replace(spec.load, max_context_len=64), env=sim_env)
    runners.append(runner)
    with pytest.raises(ContextLengthExceeded, match="context"):
        await collect(runner, "[[n=2]] " + "word " * 200)
    text, _ = await collect(runner, "[[n=2]] short")
    assert text == reply("[[n=2]] short", 2)


async def test_crash_during_generation_names_the_signal(make_spec: SpecMaker, sim_env: dict[str, str],
                                                        runners: list[RunnerProcess]) -> None:
    runner = await start(make_spec(fault="segv_at_token:5"), sim_env, runners)
    with pytest.raises(RunnerCrashed, match=r"runner for sim-0\.5b crashed with SIGSEGV during generation"):
        await collect(runner, "[[n=20]] a b c")
    ended = await runner.wait()
    assert (ended.signal, ended.during) == (signal.SIGSEGV, "generation")
    assert not alive(runner.pid)


async def test_exit_mid_run_reports_the_status(make_spec: SpecMaker, sim_env: dict[str, str],
                                               runners: list[RunnerProcess]) -> None:
    runner = await start(make_spec(fault="exit_at_token:3"), sim_env, runners)
    with pytest.raises(RunnerCrashed, match=r"exited with status \d+ during generation"):
        await collect(runner, "[[n=20]] a b c")
    ended = await runner.wait()
    assert ended.signal is None and ended.returncode not in (None, 0)


async def test_init_failure_is_load_failed_with_the_runtime_error_line(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    with pytest.raises(LoadFailed, match=r"rkllm_init failed.*: E \S+") as caught:
        await start(make_spec(fault="init_fail"), sim_env, runners)
    assert "stalled" not in caught.value.message


async def test_init_segfault_is_a_crash_during_load(make_spec: SpecMaker, sim_env: dict[str, str],
                                                    runners: list[RunnerProcess]) -> None:
    with pytest.raises(RunnerCrashed, match="crashed with SIGSEGV during load"):
        await start(make_spec(fault="init_segv"), sim_env, runners)


async def test_hung_generation_cannot_be_aborted_and_is_killed(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    # the sim hangs right after the first token, deaf to rkllm_abort
    runner = await start(make_spec(fault="hang_at_token:1"), sim_env, runners)
    stream = runner.generate(RunnerGeneration(params=GenerateParams(prompt="[[n=50]] a b c")))
    first = await anext(stream)
    assert isinstance(first, TokenChunk)
    assert await runner.abort(0.3) is False
    runner.kill()
    ended = await runner.wait()
    assert (ended.signal, ended.during) == (signal.SIGKILL, "generation")
    with pytest.raises(RunnerCrashed, match="SIGKILL during generation"):
        async for _ in stream:
            pass


async def test_closing_the_stream_of_a_hung_runtime_does_not_return(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    runner = await start(make_spec(fault="hang_at_token:1"), sim_env, runners)
    stream = runner.generate(RunnerGeneration(params=GenerateParams(prompt="[[n=50]] a b c")))
    await anext(stream)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stream.aclose(), 0.3)
    runner.kill()
    assert (await runner.wait()).signal == signal.SIGKILL


async def test_slow_load_kept_alive_by_heartbeats(make_spec: SpecMaker, sim_env: dict[str, str],
                                                  runners: list[RunnerProcess]) -> None:
    # init takes 2.5 s, longer than the 1.8 s stall timeout: heartbeats every second keep it going
    runner = await start(make_spec(fault="slow_init:2500"), sim_env, runners, load_timeout=1.8)
    assert runner.load_s is not None and runner.load_s >= 2.5


async def test_hung_init_is_killed_as_stalled_although_the_runner_still_beats(
        make_spec: SpecMaker, sim_env: dict[str, str]) -> None:
    # the process is alive and its heartbeat thread keeps sending; init itself does nothing
    spec = make_spec(fault="hang_init")
    with pytest.raises(LoadFailed, match=r"stalled for 1\.5 s \(no CPU, memory or read progress\)"):
        await RunnerProcess.start(spec, spec.load, env=sim_env, load_timeout=1.5)


class SpyRunner(RunnerProcess):
    """Hands out the instance while ``start`` is still loading."""

    created: asyncio.Future[RunnerProcess]

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        SpyRunner.created.set_result(self)


async def test_load_without_progress_is_killed_as_stalled(make_spec: SpecMaker, sim_env: dict[str, str]
                                                          ) -> None:
    spec = make_spec(fault="slow_init:20000")
    SpyRunner.created = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(SpyRunner.start(spec, spec.load, env=sim_env, load_timeout=1.0))
    runner = await SpyRunner.created
    os.kill(runner.pid, signal.SIGSTOP)  # a frozen runner sends no heartbeats
    with pytest.raises(LoadFailed, match=r"load of sim-0\.5b stalled for 1 s"):
        await task
    ended = await runner.wait()
    assert ended.signal == signal.SIGKILL and ended.during == "load"


async def test_stop_destroys_and_reaps(make_spec: SpecMaker, sim_env: dict[str, str],
                                       runners: list[RunnerProcess]) -> None:
    runner = await start(make_spec(), sim_env, runners)
    ended = await runner.stop(5.0)
    assert (ended.returncode, ended.signal, ended.during) == (0, None, "stop")
    assert not alive(runner.pid)
    assert await runner.wait() == ended


async def test_stop_during_a_generation_aborts_it_first(make_spec: SpecMaker, sim_env: dict[str, str],
                                                        runners: list[RunnerProcess]) -> None:
    runner = await start(make_spec(token_us=2000), sim_env, runners)
    stream = runner.generate(RunnerGeneration(params=GenerateParams(prompt="[[n=5000]] a b")))
    await anext(stream)
    ended = await runner.stop(5.0)
    assert ended.returncode == 0
    items = [item async for item in stream]
    assert isinstance(items[-1], RunnerDone) and items[-1].finish == "abort"


async def test_closing_the_stream_early_aborts_and_the_runner_serves_the_next(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    runner = await start(make_spec(token_us=1000), sim_env, runners)
    stream = runner.generate(RunnerGeneration(params=GenerateParams(prompt="[[n=100000]] x y")))
    assert isinstance(await anext(stream), TokenChunk)
    await stream.aclose()
    assert await runner.abort(0.0) is True  # aclose returned only once the runtime had stopped
    text, done = await collect(runner, "[[n=5]] next one")
    assert (text, done.finish) == (reply("[[n=5]] next one", 5), "stop")


async def test_explicit_abort_returns_true_and_finishes_with_abort(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    runner = await start(make_spec(token_us=1000), sim_env, runners)
    stream = runner.generate(RunnerGeneration(params=GenerateParams(prompt="[[n=100000]] x y")))
    await anext(stream)
    assert await runner.abort(5.0) is True
    items = [item async for item in stream]
    assert isinstance(items[-1], RunnerDone) and items[-1].finish == "abort"
    assert items[-1].completion_tokens < 100000
