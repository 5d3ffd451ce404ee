"""rkllm_abort reaches the library only while a run is in progress (issue 11), on every simulator flavour.

The vendor documents rkllm_abort as "interrupt ongoing inference" and nothing else (rkllm-runtime.md §1.2
table, §3); what an abort does to an idle handle, or to the next run, is unknown on a real runtime. The
simulator counts such calls per handle (``Sim.stray_aborts``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from rkio.runtime.base import GenerateParams, GenerationResult, LoadParams, Token
from rkio.runtime.rkllm import RkllmRuntime
from simkit.introspect import Sim

RUNS = 8


def _keep(_token: Token) -> bool:
    return True


def _abort_from_another_thread(runtime: RkllmRuntime, prompt: str) -> GenerationResult:
    first = threading.Event()
    outcome: list[GenerationResult] = []

    def sink(_token: Token) -> bool:
        first.set()
        return True

    worker = threading.Thread(target=lambda: outcome.append(runtime.generate(GenerateParams(prompt=prompt),
                                                                             sink)))
    worker.start()
    assert first.wait(10)
    runtime.abort()
    worker.join(10)
    assert not worker.is_alive()
    return outcome[0]


def test_no_abort_reaches_a_handle_that_is_not_running(runtime: RkllmRuntime, model: Callable[..., Path],
                                                       sim: Sim) -> None:
    runtime.load(LoadParams(model_path=str(model(token_us=300)), max_context_len=1024, max_new_tokens=40))
    runtime.abort()  # before any run: nothing to stop
    intended = 0
    for i in range(RUNS):
        # the reply ends by itself (EOS)
        assert runtime.generate(GenerateParams(prompt=f"eos {i} [[n=6]]"), _keep).finish == "stop"
        # the runtime's own max_new_tokens ends it
        assert runtime.generate(GenerateParams(prompt=f"long {i} [[n=90]]"), _keep).finish == "length"
        # the caller declines a token mid-reply: the run is still going, so that abort is a real one
        seen: list[Token] = []
        result = runtime.generate(GenerateParams(prompt=f"cut {i} [[n=30]]"),
                                  lambda t, seen=seen: seen.append(t) or len(seen) < 3)
        assert result.finish == "abort"
        # a client aborts from another thread while tokens flow
        assert _abort_from_another_thread(runtime, f"client {i} [[n=35]]").finish == "abort"
        intended += 2
        runtime.abort()  # after the run returned: nothing to stop
    assert sim.stray_aborts(runtime) == {"while_idle": 0, "without_effect": 0}
    assert sim.handle(runtime)["aborts"] >= intended
    assert sim.handle(runtime)["runs"] == 4 * RUNS
