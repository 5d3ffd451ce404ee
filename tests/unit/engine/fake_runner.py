"""A fake runner for shell tests: tokens released by ``asyncio.Event`` gates, never by sleeping."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from rkio.engine.types import ModelSpec, RunnerDone, RunnerExit, RunnerGeneration, RunnerMemory, TokenChunk
from rkio.errors import ModelNotFound, RkioError, RunnerCrashed
from rkio.runtime.base import LoadParams, Perf
from rkio.units import MiB


class FakeRunner:
    def __init__(self, spec: ModelSpec, load: LoadParams, pid: int, tokens: list[str]) -> None:
        self.spec, self.load, self.pid, self.tokens = spec, load, pid, tokens
        self.gate: asyncio.Event | None = None  # when set, each token waits for it (then it is cleared)
        self.abort_ok = True
        self.aborted = asyncio.Event()
        self.closed = False
        self.crash_at: int | None = None
        self.generations: list[RunnerGeneration] = []
        self.runtime_name = "rkllm-fake"
        self.features: frozenset[str] = frozenset({"clear_kv_cache", "get_kv_cache_size"})
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.killed = False
        self._exit: asyncio.Future[RunnerExit] = asyncio.get_running_loop().create_future()

    def memory(self) -> RunnerMemory | None:
        return RunnerMemory(rss_bytes=300 * MiB, hwm_bytes=320 * MiB, runtime_mb=None)

    async def generate(self, gen: RunnerGeneration) -> AsyncGenerator[TokenChunk | RunnerDone, None]:
        self.generations.append(gen)
        try:
            for i, text in enumerate(self.tokens):
                if self.crash_at == i:
                    self._die(signal.SIGSEGV, "generation")
                if self.gate is not None:
                    await self._wait_gate()
                    if self.aborted.is_set():
                        yield RunnerDone("abort", 3, i, None, self.memory())
                        return
                if self._exit.done():
                    raise RunnerCrashed(self._exit.result().describe(self.spec.name))
                yield TokenChunk(text, (i,))
            perf = Perf(prefill_ms=5.0, prefill_tokens=3, generate_ms=20.0, generate_tokens=len(self.tokens),
                        memory_usage_mb=None)
            yield RunnerDone("stop", 3, len(self.tokens), perf, self.memory())
        finally:
            self.closed = True

    async def call(self, op: str, args: dict[str, Any], owner: str) -> object:
        self.calls.append((op, args, owner))
        if self._exit.done():
            raise RunnerCrashed(self._exit.result().describe(self.spec.name))
        return [len(self.calls)] if op == "get_kv_cache_size" else None

    async def _wait_gate(self) -> None:
        assert self.gate is not None
        waits = [asyncio.ensure_future(self.gate.wait()), asyncio.ensure_future(self.aborted.wait()),
                 asyncio.ensure_future(asyncio.shield(self._exit))]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        self.gate.clear()

    async def abort(self, timeout: float) -> bool:  # noqa: ASYNC109
        if self.abort_ok:
            self.aborted.set()
        return self.abort_ok

    async def stop(self, grace: float) -> RunnerExit:
        if not self._exit.done():
            self._exit.set_result(RunnerExit(0, None, "stop", None))
        return await self._exit

    def kill(self) -> None:
        self.killed = True
        self._die(signal.SIGKILL, "generation")

    def _die(self, sig: int, during: Any) -> None:
        if not self._exit.done():
            self._exit.set_result(RunnerExit(None, sig, during, "E rkllm: boom"))

    async def wait(self) -> RunnerExit:
        return await asyncio.shield(self._exit)


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
