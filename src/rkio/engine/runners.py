"""The runner processes the shell owns: starting them (a load), stopping them, killing and reaping them.

``RunnerPool`` is the part of the supervisor that holds process objects. It reports what happens to them as
scheduler events through ``post``: ``LoadDone`` / ``LoadFailed`` when a load ends, ``RunnerDied`` the
moment a runner's frame pipe closes, ``RunnerKilled`` before rkio kills one itself, and ``RunnerExited``
once a runner is reaped and the memory it held is back (or the wait for it was capped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any, Protocol

from rkio.config import Settings
from rkio.engine import meminfo
from rkio.engine.chunk_push import RunnerRelay
from rkio.engine.events import Event, LoadDone, LoadFailed, RunnerDied, RunnerExited, RunnerKilled
from rkio.engine.runner.messages import RunnerDone, RunnerExit, RunnerGeneration, RunnerMemory
from rkio.engine.types import ModelSpec, TokenChunk
from rkio.errors import LoadFailed as LoadFailedError
from rkio.errors import RkioError, RunnerCrashed, ShuttingDown
from rkio.runtime.base import LoadParams

log = logging.getLogger("rkio.engine.supervisor")


class Runner(Protocol):
    """What the engine needs of a runner (``rkio.engine.runner.RunnerProcess`` implements it)."""

    pid: int
    runtime_name: str  # Runtime.name, e.g. "rkllm-1.2.1"
    features: frozenset[str]  # the runtime's Feature values

    @property
    def alive(self) -> bool:
        """False from the moment the runner's frame pipe closed (it died, or exited)."""
        ...

    def when_dead(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the runner's frame pipe closes (soon, if it already has)."""
        ...

    def memory(self) -> RunnerMemory | None: ...
    def generate(self, gen: RunnerGeneration, push: Callable[[TokenChunk], bool] | None = None,
                 relay: RunnerRelay | None = None) -> AsyncGenerator[TokenChunk | RunnerDone, None]:
        """Closing the generator (``aclose``) aborts the generation and returns once the runtime stopped.

        ``push``: the consumer's offer to take chunks as they arrive instead, ``relay`` its offer of the
        client's socket (``rkio.engine.chunk_push``); a runner may ignore either."""
        ...
    async def call(self, op: str, args: dict[str, Any], owner: str) -> object:
        """A runtime call on the idle handle (``rkio.engine.calls``)."""
        ...
    async def abort(self, timeout: float) -> bool:  # noqa: ASYNC109 (pinned runner interface)
        """Abort what runs; True once the runtime is idle (at once if it was), False after ``timeout``."""
        ...
    async def stop(self, grace: float) -> RunnerExit: ...
    def kill(self) -> None: ...
    async def wait(self) -> RunnerExit: ...


class RunnerFactory(Protocol):
    """Starts a runner and loads the model in it, e.g. ``RunnerProcess.start``."""

    async def __call__(self, spec: ModelSpec, load: LoadParams, *, load_timeout: float = ...) -> Runner: ...


class RunnerPool:
    """The live runners, one per loaded model, and the tasks that load, stop and reap them."""

    def __init__(self, settings: Settings, factory: RunnerFactory, post: Callable[[Event], None],
                 spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
                 mem_probe: Callable[[], int | None]) -> None:
        self.settings = settings
        self._factory = factory
        self._post = post
        self._spawn = spawn
        self._mem_probe = mem_probe
        self._runners: dict[str, tuple[int, Runner]] = {}
        self._keys: dict[int, tuple[str, int]] = {}  # id(runner) -> (model, incarnation)
        self._loads: dict[str, asyncio.Task[None]] = {}
        self._mem_before: dict[tuple[str, int], tuple[int | None, int]] = {}

    def live(self, model: str, incarnation: int) -> Runner | None:
        """The runner of that incarnation, if it is registered and its pipe is still open."""
        inc, runner = self._runners.get(model, (0, None))
        return runner if runner is not None and inc == incarnation and runner.alive else None

    def loads(self) -> list[asyncio.Task[None]]:
        return list(self._loads.values())

    def start_load(self, model: str, incarnation: int, spec: ModelSpec, load: LoadParams) -> None:
        log.info("loading %s (context %d, domain %d)", model, load.max_context_len, load.base_domain_id)
        self._loads[model] = self._spawn(self._load(model, incarnation, spec, load))

    async def _load(self, model: str, incarnation: int, spec: ModelSpec, load: LoadParams) -> None:
        try:
            runner = await self._factory(spec, load, load_timeout=self.settings.load_timeout)
        except asyncio.CancelledError:
            self._post(LoadFailed(model, incarnation, ShuttingDown("load cancelled by shutdown"), False))
            raise
        except RkioError as exc:
            self._post(LoadFailed(model, incarnation, exc, isinstance(exc, RunnerCrashed)))
        except Exception as exc:
            log.exception("starting a runner for %s failed", model)
            self._post(LoadFailed(model, incarnation, LoadFailedError(f"{model}: {exc}"), False))
        else:
            self._runners[model] = (incarnation, runner)
            self._keys[id(runner)] = (model, incarnation)
            self._spawn(self._reap(model, incarnation, runner))
            self._post(LoadDone(model, incarnation, runner.pid, runner.memory(), runner.features))
            runner.when_dead(lambda: self._post(RunnerDied(model, incarnation)))
        finally:
            self._loads.pop(model, None)

    async def _reap(self, model: str, incarnation: int, runner: Runner) -> None:
        exit_ = await runner.wait()
        before, expected = self._mem_before.pop((model, incarnation), (None, 0))
        if not await meminfo.wait_for_release(self._mem_probe, before, expected):
            log.warning("memory of %s's runner did not come back within %.0f s", model,
                        meminfo.RECOVERY_CAP_S)
        if self._runners.get(model, (0, None))[0] == incarnation:
            del self._runners[model]
        self._keys.pop(id(runner), None)
        self._post(RunnerExited(model, incarnation, exit_))

    def stop_runner(self, model: str, incarnation: int, reason: str) -> None:
        inc, runner = self._runners.get(model, (0, None))
        if runner is None or inc != incarnation:
            return
        memory = runner.memory()
        if reason != "shutdown":  # no next load to protect: shutdown need not wait for the memory
            # NPU buffers may be outside RSS: what the load took from the machine is what must come back
            taken = max(memory.rss_bytes, memory.available_drop_bytes or 0) if memory else None
            self._mem_before[(model, incarnation)] = (self._mem_probe(), meminfo.expected_release(taken))
        log.info("stopping %s (%s)", model, reason)
        self._spawn(self._stop(runner))

    async def _stop(self, runner: Runner) -> None:
        try:
            await runner.stop(self.settings.stop_grace)
        except Exception:
            log.exception("stopping runner %s failed; killing it", runner.pid)
            runner.kill()

    async def kill(self, runner: Runner, reason: str) -> None:
        """Kill a runner ourselves, say so first, and return once it is dead (the NPU is free)."""
        key = self._keys.get(id(runner))
        log.warning("killing runner %s: %s", runner.pid, reason)
        if key is not None:
            self._post(RunnerKilled(key[0], key[1], reason))
        runner.kill()
        try:
            await asyncio.wait_for(runner.wait(), self.settings.stop_grace)
        except TimeoutError:
            log.error("runner %s survived SIGKILL for %.1f s", runner.pid, self.settings.stop_grace)

    def cancel_loads(self) -> None:
        for task in list(self._loads.values()):
            task.cancel()

    def runner_of(self, model: str) -> Runner | None:
        """The loaded runner of ``model``, if any (for lease information)."""
        return self._runners.get(model, (0, None))[1]

    async def reap_all(self, timeout: float) -> None:  # noqa: ASYNC109 (a bound, not a deadline API)
        """Kill every runner and wait (up to ``timeout``) until each has been reaped."""
        runners = [runner for _, runner in self._runners.values()]
        for runner in runners:
            runner.kill()
        if runners:
            waits = asyncio.gather(*(runner.wait() for runner in runners), return_exceptions=True)
            try:
                await asyncio.wait_for(waits, timeout)
            except TimeoutError:
                log.error("%d runner(s) not reaped %.1f s after SIGKILL", len(runners), timeout)
