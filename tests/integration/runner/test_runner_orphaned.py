"""A runner whose runtime is stuck in an abort-deaf run when its gateway dies (SIGKILL) must not live on
holding NPU memory and the NPU: it exits by itself. Found by the chaos soak (tests/soak)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import simkit
from rkio.engine.runner.service import ORPHAN_EXIT_S
from rkio.engine.types import ModelSpec

pytestmark = pytest.mark.timeout(90)

GATEWAY = r"""
import asyncio, json, os, sys
from rkio.engine.registry import ModelRegistry
from rkio.engine.runner import RunnerProcess
from rkio.engine.runner.messages import RunnerGeneration
from rkio.runtime.base import GenerateParams

async def main():
    spec = ModelRegistry(sys.argv[1]).get(sys.argv[2])
    runner = await RunnerProcess.start(spec, spec.load, env=json.loads(sys.argv[3]), load_timeout=30)
    params = GenerateParams(prompt="stuck [[fault=hang_at_token:1]]")
    stream = runner.generate(RunnerGeneration(params=params))
    await stream.__anext__()  # the first token: the run is now inside the runtime, deaf to abort
    print(runner.pid, flush=True)
    os._exit(0)  # the gateway dies without a word, as under SIGKILL

asyncio.run(main())
"""


def test_a_runner_stuck_in_the_runtime_exits_after_its_gateway_died(
        make_spec: Callable[..., ModelSpec], sim_env: dict[str, str], tmp_path: Path) -> None:
    spec = make_spec("stuck")
    done = subprocess.run([sys.executable, "-c", GATEWAY, str(tmp_path / "models"), spec.name,
                           json.dumps(sim_env)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[0])
    state = sim_env["RKLLM_SIM_STATE"]
    try:
        assert [j["pid"] for j in simkit.read_npu_jobs(state)["active"]] == [pid]
        deadline = time.monotonic() + ORPHAN_EXIT_S + 20
        while [r["pid"] for r in simkit.read_state(state)["reservations"]] == [pid]:
            assert time.monotonic() < deadline, "the orphaned runner still holds its NPU memory"
            time.sleep(0.2)
        assert simkit.read_state(state)["reservations"] == []
        assert simkit.read_npu_jobs(state)["active"] == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # whatever happened, it must not outlive the test
