"""The runner never sends rkllm_abort to a handle that is not generating, whatever ends the reply (issue 11).

Before the fix the runner declined the token at which a reply reached ``max_tokens`` or a stop string, and
the binding aborted there, even when the runtime was about to end the reply itself (on 1.2.x, where
max_tokens is the runner's job: one rkllm_abort for every run of a benchmark), and again at FINISH after a
client's abort. The runner runs in this process here (RunnerService on a thread, real frames), so the
simulator's per-handle record is readable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import simkit
from rkio.engine.runner.frames import Abort, Done, Generate, Tokens
from rkio.engine.types import ChatMessage, RunnerGeneration
from rkio.runtime.base import GenerateParams, LoadParams
from rkio.runtime.rkllm import RkllmRuntime
from simkit.introspect import Sim
from unit.runner.runner_fakes import Peer, make_spec

pytestmark = pytest.mark.timeout(120)

RUNS = 4


@pytest.fixture(params=simkit.FLAVOURS)
def served(request: pytest.FixtureRequest, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Peer, RkllmRuntime, Sim]]:
    for name in ("RKLLM_SIM_FAULT", "RKLLM_SIM_TOKEN_US", "RKIO_RKLLM_ABI", "RKIO_RKLLM_LIB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RKLLM_SIM_STATE", str(tmp_path / "sim-state"))
    library = simkit.sim_library(str(request.param))
    model = simkit.make_model(tmp_path / "m.rkllm", 1 << 20, token_us=200)
    runtime = RkllmRuntime(str(library))
    peer = Peer(runtime)  # type: ignore[arg-type]
    spec = make_spec(path=str(model), load=LoadParams(str(model), max_context_len=2048, max_new_tokens=512))
    peer.load(spec)
    yield peer, runtime, Sim(library)
    peer.sock.close()
    peer.thread.join(10)


def run(peer: Peer, prompt: str | None = None, *, messages: tuple[ChatMessage, ...] | None = None,
        max_tokens: int | None = None, stop: tuple[str, ...] = (), abort: bool = False) -> tuple[str, Done]:
    params = GenerateParams(prompt=prompt, max_new_tokens=max_tokens)
    peer.send(Generate(RunnerGeneration(params=params, messages=messages, stop=stop)))
    frames = [peer.recv()]
    if abort:
        assert isinstance(frames[0], Tokens)
        peer.send(Abort())
    while not isinstance(frames[-1], Done):
        frames.append(peer.recv())
    done = frames[-1]
    assert isinstance(done, Done)
    return "".join(f.text for f in frames if isinstance(f, Tokens)), done


def test_no_abort_reaches_an_idle_handle_whatever_ends_the_reply(
        served: tuple[Peer, RkllmRuntime, Sim]) -> None:
    peer, runtime, sim = served
    for i in range(RUNS):
        _, done = run(peer, f"eos {i} [[n=5]]")  # ends by itself
        assert (done.finish, done.completion_tokens) == ("stop", 5)
        _, done = run(peer, f"exact {i} [[n=6]]", max_tokens=6)  # max_tokens where the reply ends anyway
        assert done.completion_tokens == 6
        _, done = run(peer, f"short {i} [[n=40]]", max_tokens=4)  # max_tokens cuts a longer reply
        assert (done.finish, done.completion_tokens) == ("length", 4)
        text, done = run(peer, f"[[n=3]] alpha beta gamma{i}", stop=(f"gamma{i}",))  # stop string at the end
        assert (text, done.finish) == (" alpha beta ", "stop")
        text, done = run(peer, f"[[n=30]] one two three{i} four", stop=(f"three{i}",))  # stop mid-reply
        assert (text, done.finish) == (" one two ", "stop")
        _, done = run(peer, messages=(ChatMessage("user", f"chat {i} [[n=4]]"),))  # template stop strings
        assert done.completion_tokens == 4
        _, done = run(peer, f"client {i} [[n=300]]", abort=True)  # a client goes away mid-reply
        assert done.finish == "abort"
    assert sim.stray_aborts(runtime) == {"while_idle": 0, "without_effect": 0}
    handle = sim.handle(runtime)
    assert handle["runs"] == 7 * RUNS
    assert handle["aborts"] >= 2 * RUNS  # the stop mid-reply and the client's are real stops
    assert sim.last_run(runtime)["finish"] == "abort"


def test_a_cut_reply_ends_with_the_runtime_idle_and_the_next_run_whole(
        served: tuple[Peer, RkllmRuntime, Sim]) -> None:
    peer, runtime, sim = served
    run(peer, "first [[n=40]]", max_tokens=3)
    assert not runtime.is_running()
    text, done = run(peer, "second [[n=5]]")
    assert (done.finish, done.completion_tokens) == ("stop", 5)
    assert text == "".join(simkit.expected_reply("second [[n=5]]", 5))
    assert sim.stray_aborts(runtime) == {"while_idle": 0, "without_effect": 0}
