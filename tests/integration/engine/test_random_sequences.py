"""Randomized sequences of loads, generations, bursts, cancels, unloads and crashes against the engine
with real runners on the simulator (Hypothesis state machine, bounded to a few dozen seconds).

Invariants: the engine's budget is never exceeded (checked on every scheduler event), the simulator
never records an overcommit or OOM kill, the engine's runners are exactly the simulator's reservation
holders once quiet, every accepted request ends exactly once (Done xor one error) with exactly the
oracle's text when it succeeds, and no runner process outlives ``engine.stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import pytest
from engine_sim import (
    SimModels,
    assert_reply,
    check_memory_truth,
    child_pids,
    collect,
    quiet,
    request,
    settle,
    start_engine,
)
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import simkit
from rkio.engine.engine import ModelEngine
from rkio.engine.types import TokenChunk
from rkio.errors import ModelQuarantined, RkioError, RunnerCrashed

pytestmark = pytest.mark.timeout(180)

GiB, MiB = simkit.GiB, simkit.MiB
BUDGET = 4 * GiB  # the sim's RAM as well: not every model fits at once
MODELS = {  # name -> (file size, header)
    "a": (512 * MiB, {}),
    "b": (1 * GiB, {}),
    "c": (2 * GiB, {}),
    "slow": (64 * MiB, {"token_us": 2000}),
    "crashy": (64 * MiB, {"fault": "segv_at_token:2"}),
}
HEALTHY = ("a", "b", "c", "slow")
KEEP_ALIVE = st.sampled_from([None, 0.0, 0.3, -1.0])


class EngineMachine(RuleBasedStateMachine):
    monkeypatch: ClassVar[pytest.MonkeyPatch]  # the running test's, so the environment is restored

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="rkio-engine-seq-"))
        self.sim = simkit.SimEnv.fresh(self.dir, ram_bytes=BUDGET, overcommit="oom", token_us=0)
        for key, value in self.sim.env({}).items():  # runners inherit this process's environment
            self.monkeypatch.setenv(key, value)
        models = SimModels(self.dir / "models")
        for name, (size, header) in MODELS.items():
            models.add(name, size, **header)
        self.runner = asyncio.Runner()
        self.before = child_pids()
        self.engine: ModelEngine = self.run(start_engine(models.root, self.dir / "state", self.sim,
                                                         abort_grace=1.0, stop_grace=1.0))
        self.over_budget: list[str] = []
        self.run(self._watch_budget())
        self.counter = 0

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    async def _watch_budget(self) -> None:
        """Check the budget after every scheduler event, not only between steps."""
        sup = self.engine._sup
        assert sup is not None

        def check() -> bool:
            status = self.engine.status()
            if status.used_bytes > status.budget_bytes:
                self.over_budget.append(f"{status.used_bytes} > {status.budget_bytes}: {status.loaded}")
            return False

        asyncio.get_running_loop().create_task(sup.until(check))

    def prompt(self, n: int) -> str:
        self.counter += 1
        return f"[[n={n}]] req{self.counter} w{self.counter}"

    async def _generate(self, model: str, n: int, keep_alive: float | None) -> None:
        prompt = self.prompt(n)
        reply = await collect(self.engine, model, prompt, keep_alive=keep_alive)
        if model != "crashy":
            assert_reply(reply, prompt, n)
        elif not isinstance(reply.error, ModelQuarantined):  # 3 crashes quarantine it
            if n <= 2:  # it crashes before its third token
                assert_reply(reply, prompt, n)
            else:
                assert isinstance(reply.error, RunnerCrashed), reply.error

    # ------------------------------------------------------------------------------------------ rules

    @rule(model=st.sampled_from([*HEALTHY, "crashy"]), n=st.integers(1, 20), keep_alive=KEEP_ALIVE)
    def generate(self, model: str, n: int, keep_alive: float | None) -> None:
        self.run(self._generate(model, n, keep_alive))

    @rule(jobs=st.lists(st.tuples(st.sampled_from([*HEALTHY, "crashy"]), st.integers(1, 12)),
                        min_size=2, max_size=8))
    def burst(self, jobs: list[tuple[str, int]]) -> None:
        """Concurrent clients on several models: queueing, evictions and waits under contention."""
        async def all_of() -> None:
            await asyncio.gather(*(self._generate(model, n, None) for model, n in jobs))
        self.run(all_of())

    @rule(model=st.sampled_from(HEALTHY), after=st.sampled_from(["queued", "first_token"]))
    def cancel(self, model: str, after: str) -> None:
        async def leave() -> None:
            stream = self.engine.generate(request(model, self.prompt(300)))
            try:
                async for event in stream:
                    if after == "queued" or isinstance(event, TokenChunk):
                        break
            except RkioError as exc:
                raise AssertionError(f"{model} failed: {exc!r}") from exc
            finally:
                await stream.aclose()
        self.run(leave())

    @rule(model=st.sampled_from(HEALTHY), keep_alive=KEEP_ALIVE)
    def load(self, model: str, keep_alive: float | None) -> None:
        self.run(self.engine.load(model, keep_alive))

    @rule(model=st.sampled_from([*HEALTHY, "crashy"]))
    def unload(self, model: str) -> None:
        self.run(self.engine.unload(model))
        assert model not in {m.name for m in self.engine.status().loaded}

    # ------------------------------------------------------------------------------------------ invariants

    @invariant()
    def memory_matches_the_simulator(self) -> None:
        self.run(settle(self.engine, quiet))
        assert self.over_budget == []
        check_memory_truth(self.engine, self.sim)
        status = self.engine.status()
        assert status.running == 0 and status.queue_length == 0

    def teardown(self) -> None:
        try:
            with contextlib.suppress(Exception):
                self.run(self.engine.stop(grace=1.0))
            assert child_pids() - self.before == set(), "runner processes outlived engine.stop()"
            assert self.sim.read_state()["reservations"] == []
        finally:
            self.runner.close()
            shutil.rmtree(self.dir, ignore_errors=True)


def test_random_engine_sequences(sim: simkit.SimEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    EngineMachine.monkeypatch = monkeypatch
    EngineMachine.TestCase.settings = settings(
        max_examples=10, stateful_step_count=12, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure reports its steps at once
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    EngineMachine.TestCase().runTest()
