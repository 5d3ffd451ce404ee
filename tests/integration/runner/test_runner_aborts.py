"""The runner never sends rkllm_abort to a handle that is not generating, whatever ends the reply (issue 11).

Before the fix the runner declined the token at which a reply reached ``max_tokens`` or a stop string, and
the binding aborted there, even when the runtime was about to end the reply itself (on 1.2.x, where
max_tokens is the runner's job: one rkllm_abort for every run of a benchmark), and again at FINISH after a
client's abort. The runner runs in this process here (RunnerService on a thread, real frames), so the
simulator's per-handle record is readable.
"""

from __future__ import annotations

import pytest
from runner_inproc import run

import simkit
from rkio.engine.types import ChatMessage
from rkio.runtime.rkllm import RkllmRuntime
from simkit.introspect import Sim
from unit.runner.runner_fakes import Peer

pytestmark = pytest.mark.timeout(120)

RUNS = 4


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
