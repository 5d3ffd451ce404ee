"""A generation with sampling runs on every rkllm generation; on 1.3.0 the sampling reaches the library
with the run (issue 11: it was refused with "per-request sampling is not supported" before 1.3.0)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from runner_inproc import run

from rkio.engine.runner.frames import Done, Error, Generate
from rkio.engine.runner.messages import RunnerGeneration
from rkio.runtime.base import GenerateParams, Sampling
from rkio.runtime.rkllm import RkllmRuntime
from simkit.introspect import Sim
from unit.runner.runner_fakes import Peer

pytestmark = pytest.mark.timeout(60)

HOT = replace(Sampling(), temperature=1.25, top_p=0.5, top_k=7, seed=3)


def test_sampling_is_applied_per_run_where_the_abi_has_it_and_never_refused(
        served: tuple[Peer, RkllmRuntime, Sim]) -> None:
    peer, runtime, sim = served
    text, done = run(peer, "[[n=4]] warm words", sampling=HOT, max_tokens=3)
    assert done.completion_tokens == 3 and text
    sent = sim.last_run(runtime)["input"]
    loaded = sim.last_init(runtime)
    if runtime.abi == "1.3.0":
        assert sent["sampling"]["temperature"] == pytest.approx(1.25)
        assert (sent["sampling"]["top_p"], sent["sampling"]["top_k"]) == (pytest.approx(0.5), 7)
        assert sent["max_new_tokens"] == 3  # per run as well
    else:
        assert "sampling" not in sent  # the ABI has no field for it: the loaded sampling applied
    assert loaded["temperature"] == pytest.approx(Sampling().temperature)  # init is untouched
    text, done = run(peer, "[[n=2]] plain")
    assert done.completion_tokens == 2
    if runtime.abi == "1.3.0":
        assert sim.last_run(runtime)["input"]["sampling"] is None  # nothing carried over to the next run


def test_an_exact_raw_input_is_refused_with_the_feature_it_lacks(
        served: tuple[Peer, RkllmRuntime, Sim]) -> None:
    # the IO API's raw runtime input runs as given: its caller is told which feature is missing
    peer, runtime, _ = served
    params = GenerateParams(prompt="[[n=2]] x", sampling=HOT, max_new_tokens=2)
    gen = RunnerGeneration(params=params, exact=True)
    peer.send(Generate(gen))
    frames = peer.recv_until(Done | Error)  # type: ignore[arg-type]
    if runtime.abi == "1.3.0":
        assert isinstance(frames[-1], Done) and frames[-1].completion_tokens == 2
    else:
        error = frames[-1]
        assert isinstance(error, Error)
        assert (error.kind, error.feature) == ("Unsupported", "per-request sampling")
    assert run(peer, "[[n=2]] y")[1].completion_tokens == 2  # the runner serves on
