"""The simulator's machine-wide NPU job record and its per-run faults: a run of one process that starts while
another process is inside ``rkllm_run`` is an overlap (the NPU runs one job at a time), a killed process's run
ends with it, ``[[fault=...]]`` in a prompt arms one run only, and ``slow_prefill`` ignores abort."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import simkit
from rkio.runtime.base import GenerateParams, LoadParams, Token
from rkio.runtime.rkllm import RkllmRuntime

pytestmark = pytest.mark.timeout(60)

ONE_RUN = r"""
import json, sys
from rkio.runtime.base import GenerateParams, LoadParams
from rkio.runtime.rkllm import RkllmRuntime

rt = RkllmRuntime(sys.argv[1])
rt.load(LoadParams(model_path=sys.argv[2], max_context_len=256, max_new_tokens=32))
texts = []
result = rt.generate(GenerateParams(prompt=sys.argv[3]), lambda t: texts.append(t.text) or True)
print(json.dumps([result.finish, "".join(texts)]), flush=True)
rt.destroy()
"""


@pytest.fixture(params=["1.1.4", "1.2.3"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def start_run(library: Path, model: Callable[..., Path]) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    path = model()
    started: list[subprocess.Popen[str]] = []

    def start(prompt: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", ONE_RUN, str(library), str(path), prompt], text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_run_during_another_process_run_is_an_overlap_and_a_killed_run_ends(
        sim_env: Path, start_run: Callable[[str], subprocess.Popen[str]]) -> None:
    stuck = start_run("stuck here [[fault=hang_at_token:1]]")
    wait_for(lambda: [(j["pid"], j["tag"]) for j in simkit.read_npu_jobs(sim_env)["active"]]
             == [(stuck.pid, "stuck")], "the hung run is inside the runtime")
    second = start_run("alpha beta [[n=4]]")
    out, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    assert json.loads(out) == ["stop", simkit.expected_text("alpha beta [[n=4]]", 4)]  # one run armed only
    jobs = simkit.read_npu_jobs(sim_env)
    assert (jobs["jobs"], jobs["overlaps"], jobs["max_active"]) == (2, 1, 2)
    [overlap] = jobs["overlap_log"]
    assert (overlap["run"]["pid"], overlap["run"]["tag"]) == (second.pid, "alpha")
    assert (overlap["inside"]["pid"], overlap["inside"]["tag"]) == (stuck.pid, "stuck")
    assert overlap["inside"]["time_ms"] <= overlap["run"]["time_ms"]
    assert overlap["run"]["model"] == overlap["inside"]["model"] != ""
    assert [j["pid"] for j in jobs["active"]] == [stuck.pid]  # still hung: it keeps the NPU
    stuck.send_signal(signal.SIGKILL)
    stuck.wait()
    assert simkit.read_npu_jobs(sim_env)["active"] == []  # the kernel ends a dead process's job
    third = start_run("gamma [[n=2]]")
    assert json.loads(third.communicate(timeout=30)[0])[0] == "stop"
    jobs = simkit.read_npu_jobs(sim_env)
    assert (jobs["jobs"], jobs["overlaps"], jobs["active"]) == (3, 1, [])


def test_sequential_runs_never_overlap_and_a_directive_crash_hits_one_run(
        sim_env: Path, start_run: Callable[[str], subprocess.Popen[str]]) -> None:
    crash = start_run("one two three [[fault=segv_at_token:2]]")
    out, _ = crash.communicate(timeout=30)
    assert crash.returncode == -signal.SIGSEGV and out == ""
    for prompt in ("one two three", "four five"):
        proc = start_run(prompt)
        assert json.loads(proc.communicate(timeout=30)[0]) == ["stop", simkit.expected_text(prompt)]
    jobs = simkit.read_npu_jobs(sim_env)
    assert (jobs["jobs"], jobs["overlaps"], jobs["max_active"], jobs["active"]) == (3, 0, 1, [])


def test_a_slow_prefill_does_not_react_to_abort_until_it_ends(
        runtime: RkllmRuntime, model: Callable[..., Path], sim_env: Path) -> None:
    runtime.load(LoadParams(model_path=str(model()), max_context_len=256, max_new_tokens=32))
    tokens: list[Token] = []
    results = []
    worker = threading.Thread(target=lambda: results.append(runtime.generate(
        GenerateParams(prompt="slow words [[fault=slow_prefill:1500]]"), lambda t: tokens.append(t) or True)))
    worker.start()
    wait_for(runtime.is_running, "the run started")
    runtime.abort()
    time.sleep(0.3)
    assert runtime.is_running()  # still prefilling: the abort waits for the NPU job to end
    worker.join(timeout=10)
    assert results and results[0].finish == "abort" and tokens == []
    assert simkit.read_npu_jobs(sim_env)["active"] == []
