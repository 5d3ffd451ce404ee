"""The asyncio shell around the pure scheduler: one task drains the event queue, effects run here.

Nothing but ``run`` calls the scheduler, so there are no locks. Slow work (loading, stopping, aborting,
waiting for memory to come back) runs in tasks whose results return as events. Tokens never pass
through here: a granted request iterates its runner directly (see ``rkio.engine.session``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from rkio.config import Settings
from rkio.engine import meminfo
from rkio.engine.events import (
    Event,
    GenerationDone,
    LoadDone,
    LoadFailed,
    RunnerExited,
    Tick,
)
from rkio.engine.footprints import FootprintStore
from rkio.engine.ledger import SchedulerConfig, measured_bytes
from rkio.engine.scheduler import Scheduler
from rkio.engine.types import (
    EngineEvent,
    ModelSpec,
    RunnerDone,
    RunnerExit,
    RunnerGeneration,
    RunnerMemory,
    TokenChunk,
)
from rkio.errors import LoadFailed as LoadFailedError
from rkio.errors import RkioError, RunnerCrashed, ShuttingDown
from rkio.runtime.base import LoadParams

log = logging.getLogger(__name__)


class Runner(Protocol):
    """What the engine needs of a runner (``rkio.engine.runner.RunnerProcess`` implements it)."""

    pid: int
    runtime_name: str  # Runtime.name, e.g. "rkllm-1.2.1"
    features: frozenset[str]  # the runtime's Feature values

    def memory(self) -> RunnerMemory | None: ...
    def generate(self, gen: RunnerGeneration) -> AsyncGenerator[TokenChunk | RunnerDone, None]:
        """Closing the generator (``aclose``) aborts the generation and returns once the runtime stopped."""
        ...
    async def call(self, op: str, args: dict[str, Any], owner: str) -> object:
        """A runtime call on the idle handle (``rkio.engine.calls``)."""
        ...
    async def abort(self, timeout: float) -> bool: ...  # noqa: ASYNC109 (pinned runner interface)
    async def stop(self, grace: float) -> RunnerExit: ...
    def kill(self) -> None: ...
    async def wait(self) -> RunnerExit: ...


RunnerFactory = Callable[..., Awaitable[Runner]]
"""``factory(spec, load, load_timeout=...)``, e.g. ``RunnerProcess.start``."""


@dataclass(slots=True)
class Grant:
    runner: Runner
    load_s: float | None
    granted_at: float


@dataclass(slots=True)
class Finished:
    error: RkioError | None


@dataclass(slots=True)
class Mailbox:
    """What the scheduler tells one waiting request; ``closed`` once the request stopped listening."""

    items: asyncio.Queue[EngineEvent | Grant | Finished] = field(default_factory=asyncio.Queue)
    closed: bool = False
    error: RkioError | None = None  # set by an abort: the generation must end with it
    runner: Runner | None = None


class Supervisor:
    """Implements ``Effects`` and owns the scheduler, the runners and their tasks."""

    def __init__(self, settings: Settings, runner_factory: RunnerFactory, footprints: FootprintStore,
                 budget: int, *, clock: Callable[[], float] = time.monotonic,
                 mem_probe: Callable[[], int | None] = meminfo.mem_available) -> None:
        self.settings = settings
        self.clock = clock
        self.footprints = footprints
        self.scheduler = Scheduler(SchedulerConfig.from_settings(settings, budget), self, footprints.lookup)
        self._factory = runner_factory
        self._mem_probe = mem_probe
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._mailboxes: dict[int, Mailbox] = {}
        self._runners: dict[str, tuple[int, Runner]] = {}
        self._loads: dict[str, asyncio.Task[None]] = {}
        self._mem_before: dict[tuple[str, int], tuple[int | None, int]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._watchers: list[asyncio.Future[None]] = []
        self._next_id = 0

    # ------------------------------------------------------------------------------------ the loop

    def post(self, event: Event) -> None:
        self._events.put_nowait(event)

    async def run(self) -> None:
        """Drain events until ``close``; the only caller of the scheduler."""
        while (event := await self._events.get()) is not None:
            try:
                self._learn(event)
                self.scheduler.handle(event, self.clock())
            except Exception:
                log.exception("scheduler failed on %r", event)
            self._arm_timer()
            for fut in self._watchers:
                if not fut.done():
                    fut.set_result(None)
            self._watchers.clear()

    def close(self) -> None:
        self._events.put_nowait(None)

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds after some event (tests and shutdown use this, not sleeps)."""
        while not predicate():
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._watchers.append(fut)
            await fut

    def _arm_timer(self) -> None:
        deadline = self.scheduler.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            delay = max(0.0, deadline - self.clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self.post, Tick())

    def _learn(self, event: Event) -> None:
        """Persist measured footprints before the scheduler sees them.

        Only after a generation: right after a load the KV cache and buffers are not touched yet, and a
        stored figure counts as learned at the next load, where it would under-account the model.
        """
        if isinstance(event, GenerationDone) and event.memory is not None:
            run = self.scheduler.running.get(event.request_id)
            entry = self.scheduler.models.get(run.model) if run else None
            if entry is not None:
                self.footprints.record(entry.spec, entry.ctx, measured_bytes(event.memory))

    # ------------------------------------------------------------------------------------ requests

    def open_mailbox(self) -> tuple[int, Mailbox]:
        self._next_id += 1
        box = Mailbox()
        self._mailboxes[self._next_id] = box
        return self._next_id, box

    def close_mailbox(self, request_id: int) -> None:
        box = self._mailboxes.pop(request_id, None)
        if box is not None:
            box.closed = True

    def abandon(self, request_id: int, stream: AsyncGenerator[Any, None] | None, runner: Runner) -> None:
        """A granted client left mid-generation: close its stream (aborting), then free the lane."""
        self._spawn(self._abandon(request_id, stream, runner))

    async def _abandon(self, request_id: int, stream: AsyncGenerator[Any, None] | None,
                       runner: Runner) -> None:
        try:
            if stream is not None:
                await asyncio.wait_for(stream.aclose(), self.settings.abort_grace)
        except TimeoutError:
            log.warning("abort did not return within %.1f s; killing runner %s", self.settings.abort_grace,
                        runner.pid)
            runner.kill()
        except Exception:
            log.debug("closing an abandoned stream failed", exc_info=True)
        finally:
            self.post(GenerationDone(request_id, "cancelled"))

    # ------------------------------------------------------------------------------------ effects

    def start_load(self, model: str, incarnation: int, spec: ModelSpec, load: LoadParams) -> None:
        log.info("loading %s (context %d, domain %d)", model, load.max_context_len, load.base_domain_id)
        self._loads[model] = self._spawn(self._load(model, incarnation, spec, load))

    async def _load(self, model: str, incarnation: int, spec: ModelSpec, load: LoadParams) -> None:
        try:
            runner = await self._factory(spec, load, load_timeout=self.settings.load_timeout)
        except asyncio.CancelledError:
            self.post(LoadFailed(model, incarnation, ShuttingDown("load cancelled by shutdown"), False))
            raise
        except RkioError as exc:
            self.post(LoadFailed(model, incarnation, exc, isinstance(exc, RunnerCrashed)))
        except Exception as exc:
            self.post(LoadFailed(model, incarnation, LoadFailedError(f"{model}: {exc}"), False))
        else:
            self._runners[model] = (incarnation, runner)
            self._spawn(self._reap(model, incarnation, runner))
            self.post(LoadDone(model, incarnation, runner.pid, runner.memory(), runner.features))
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
        self.post(RunnerExited(model, incarnation, exit_))

    def stop_runner(self, model: str, incarnation: int) -> None:
        inc, runner = self._runners.get(model, (0, None))
        if runner is None or inc != incarnation:
            return
        memory = runner.memory()
        if not self.scheduler.shutting_down:  # no next load to protect: shutdown need not wait for it
            self._mem_before[(model, incarnation)] = (
                self._mem_probe(), meminfo.expected_release(memory.rss_bytes if memory else None))
        log.info("stopping %s (%s)", model, self.scheduler.models[model].stop_reason)
        self._spawn(self._stop(runner))

    async def _stop(self, runner: Runner) -> None:
        try:
            await runner.stop(self.settings.stop_grace)
        except Exception:
            log.exception("stopping runner %s failed; killing it", runner.pid)
            runner.kill()

    def grant(self, request_id: int, model: str, incarnation: int, load_s: float | None) -> bool:
        box = self._mailboxes.get(request_id)
        inc, runner = self._runners.get(model, (0, None))
        if box is None or box.closed or runner is None or inc != incarnation:
            return False
        box.runner = runner
        box.items.put_nowait(Grant(runner, load_s, self.clock()))
        return True

    def abort(self, request_id: int, error: RkioError) -> None:
        box = self._mailboxes.get(request_id)
        if box is None or box.runner is None:
            return
        box.error = error
        self._spawn(self._abort(box.runner))

    async def _abort(self, runner: Runner) -> None:
        try:
            stopped = await runner.abort(self.settings.abort_grace)
        except Exception:
            stopped = False
        if not stopped:
            log.warning("runner %s did not abort within %.1f s; killing it", runner.pid,
                        self.settings.abort_grace)
            runner.kill()

    def notify(self, request_id: int, event: EngineEvent) -> None:
        box = self._mailboxes.get(request_id)
        if box is not None:
            box.items.put_nowait(event)

    def finish(self, request_id: int, error: RkioError | None) -> None:
        box = self._mailboxes.get(request_id)
        if box is not None:
            box.items.put_nowait(Finished(error))

    # ------------------------------------------------------------------------------------ shutdown

    def cancel_loads(self) -> None:
        for task in list(self._loads.values()):
            task.cancel()

    def runner_of(self, model: str) -> Runner | None:
        """The loaded runner of ``model``, if any (for lease information)."""
        return self._runners.get(model, (0, None))[1]

    def kill_all(self) -> None:
        for _, runner in list(self._runners.values()):
            runner.kill()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
