"""A fake runner for shell tests: tokens released by ``asyncio.Event`` gates, never by sleeping."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from rkio.engine.runner.messages import RunnerDone, RunnerExit, RunnerGeneration, RunnerMemory
from rkio.engine.types import ModelSpec, TokenChunk
from rkio.errors import ModelNotFound, RkioError, RunnerCrashed
from rkio.runtime.base import LoadParams, Perf
from rkio.units import MiB


class FakeRunner:
    """Dies in two steps like a process: EOF on its frames first (``alive`` False, death callbacks), then
    the reap (``wait`` returns); ``reap_gate``, when set, holds the reap until the test opens it."""

    def __init__(self, spec: ModelSpec, load: LoadParams, pid: int, tokens: list[str]) -> None:
        self.spec, self.load, self.pid, self.tokens = spec, load, pid, tokens
        self.gate: asyncio.Event | None = None  # when set, each token waits for it (then it is cleared)
        self.abort_ok = True
        self.aborted = asyncio.Event()
        self._died = asyncio.Event()
        self.closed = False
        self.crash_at: int | None = None
        self.generations: list[RunnerGeneration] = []
        self.runtime_name = "rkllm-fake"
        self.features: frozenset[str] = frozenset({"clear_kv_cache", "get_kv_cache_size"})
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.call_gate: asyncio.Event | None = None  # when set, a runtime call waits for it (or death)
        self.killed = False
        self.abort_calls = 0
        self.running = False  # the "runtime" is inside a generation
        self.reap_gate: asyncio.Event | None = None
        self.abort_gate: asyncio.Event | None = None  # when set, an abort takes only once it is opened
        self._dead: RunnerExit | None = None
        self.pushed = 0  # chunks the consumer took through ``push``
        self._reaping: asyncio.Future[None] | None = None
        self._death_callbacks: list[Any] = []
        self._exit: asyncio.Future[RunnerExit] = asyncio.get_running_loop().create_future()

    @property
    def alive(self) -> bool:
        return self._dead is None

    def when_dead(self, callback: Any) -> None:
        if self._dead is not None:
            asyncio.get_running_loop().call_soon(callback)
        else:
            self._death_callbacks.append(callback)

    def memory(self) -> RunnerMemory | None:
        return RunnerMemory(rss_bytes=300 * MiB, hwm_bytes=320 * MiB, runtime_mb=None)

    async def generate(self, gen: RunnerGeneration, push: Callable[[TokenChunk], bool] | None = None,
                       relay: object = None) -> AsyncGenerator[TokenChunk | RunnerDone, None]:
        if self._dead is not None:
            raise RunnerCrashed(self._dead.describe(self.spec.name))
        self.generations.append(gen)
        self.running = True
        try:
            for i, text in enumerate(self.tokens):
                if self.crash_at == i:
                    self._die(signal.SIGSEGV, "generation")
                if self.gate is not None:
                    await self._wait_gate()
                    if self.aborted.is_set():
                        self.running = False
                        yield RunnerDone("abort", 3, i, None, self.memory())
                        return
                if self._dead is not None:
                    raise RunnerCrashed(self._dead.describe(self.spec.name))
                chunk = TokenChunk(text, (i,))
                if push is not None and push(chunk):  # taken by the waiting consumer, as RunnerProcess does
                    self.pushed += 1
                    continue
                yield chunk
            perf = Perf(prefill_ms=5.0, prefill_tokens=3, generate_ms=20.0, generate_tokens=len(self.tokens),
                        memory_usage_mb=None)
            self.running = False
            yield RunnerDone("stop", 3, len(self.tokens), perf, self.memory())
        finally:
            self.closed = True
            if self.abort_ok and self.abort_gate is None:
                self.running = False  # the consumer's abort is acknowledged at once

    async def call(self, op: str, args: dict[str, Any], owner: str) -> object:
        self.calls.append((op, args, owner))
        self.running = True  # the handle is busy with the call (an abort cannot interrupt it)
        try:
            if self.call_gate is not None:
                waits = [asyncio.ensure_future(self.call_gate.wait()),
                         asyncio.ensure_future(self._died.wait())]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
            if self._dead is not None:
                raise RunnerCrashed(self._dead.describe(self.spec.name))
            return [len(self.calls)] if op == "get_kv_cache_size" else None
        finally:
            self.running = False

    async def _wait_gate(self) -> None:
        assert self.gate is not None
        waits = [asyncio.ensure_future(self.gate.wait()), asyncio.ensure_future(self.aborted.wait()),
                 asyncio.ensure_future(self._died.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        self.gate.clear()

    async def abort(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Like RunnerProcess.abort: True at once when the runtime is idle, else whether it stopped."""
        if not self.running or self._dead is not None:
            return True
        self.abort_calls += 1
        if not self.abort_ok:
            return False
        if self.abort_gate is not None:  # a prefill that runs to its end before the abort takes
            try:
                await asyncio.wait_for(self.abort_gate.wait(), timeout)
            except TimeoutError:
                return False
        self.aborted.set()
        self.running = False
        return True

    async def stop(self, grace: float) -> RunnerExit:
        self._die(None, "stop")
        return await self.wait()

    def kill(self) -> None:
        self.killed = True
        self._die(signal.SIGKILL, "generation")

    def crash(self, sig: int = signal.SIGSEGV) -> None:
        """The process dies by itself (EOF now, reap when ``reap_gate`` allows)."""
        self._die(sig, "idle")

    def _die(self, sig: int | None, during: Any) -> None:
        if self._dead is not None:
            return
        last_error = None if sig is None else "E rkllm: boom"
        self._dead = RunnerExit(0 if sig is None else None, sig, during, last_error)
        self.running = False
        self._died.set()
        callbacks, self._death_callbacks = self._death_callbacks, []
        for callback in callbacks:
            callback()
        self._reaping = asyncio.ensure_future(self._reap())

    async def _reap(self) -> None:
        if self.reap_gate is not None:
            await self.reap_gate.wait()
        assert self._dead is not None
        if not self._exit.done():
            self._exit.set_result(self._dead)

    async def wait(self) -> RunnerExit:
        return await asyncio.shield(self._exit)

    def wait_done(self) -> bool:
        """The process has been reaped."""
        return self._exit.done()


@dataclass
class FakeFactory:
    """Starts FakeRunners; ``load_gate`` holds loads, ``fail`` makes a model's load raise."""

    tokens: list[str] = field(default_factory=lambda: ["Hello", " world", "!"])
    load_gate: asyncio.Event | None = None
    fail: dict[str, RkioError] = field(default_factory=dict)
    runners: list[FakeRunner] = field(default_factory=list)

    async def __call__(self, spec: ModelSpec, load: LoadParams, *, load_timeout: float = 120.0) -> FakeRunner:
        if self.load_gate is not None:
            await self.load_gate.wait()
        if spec.name in self.fail:
            raise self.fail[spec.name]
        runner = FakeRunner(spec, load, 1000 + len(self.runners), list(self.tokens))
        self.runners.append(runner)
        return runner

    def last(self, name: str) -> FakeRunner:
        return [r for r in self.runners if r.spec.name == name][-1]


class FakeRegistry:
    def __init__(self, *specs: ModelSpec) -> None:
        self.specs = {s.name: s for s in specs}

    def list(self) -> list[ModelSpec]:
        return list(self.specs.values())

    def get(self, name: str) -> ModelSpec:
        if name not in self.specs:
            raise ModelNotFound(f"model {name!r} not found")
        return self.specs[name]

    def resolve(self, name: str) -> tuple[ModelSpec, str | None]:
        return self.get(name), None

    def variants(self) -> list[tuple[str, ModelSpec]]:
        return [(s.name, s) for s in self.list()]
