"""The asyncio shell around the pure scheduler: one task drains the event queue, effects run here.

Nothing but ``run`` calls the scheduler, so there are no locks. Slow work (loading, stopping, aborting,
waiting for memory to come back) runs in tasks whose results return as events. Tokens never pass
through here: a granted request iterates its runner directly (see ``rkio.engine.session``).

Two rules keep the shell and the scheduler in agreement:
- The NPU lane is released (``GenerationDone``) only once the runtime has returned from its run: an abort
  acknowledged by the runner, or the runner dead. A runner that does not return within ``abort_grace`` is
  killed, and the kill is announced (``RunnerKilled``) before it happens, so it never counts as a crash.
- A runner's death is an event the moment its frame pipe closes (``RunnerDied``), not after the reap: from
  then on nothing is granted to it, and its memory stays counted until ``RunnerExited``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

from rkio.config import Settings
from rkio.engine import meminfo
from rkio.engine.effects import GrantResult
from rkio.engine.events import (
    Event,
    GenerationDone,
    Outcome,
    Tick,
    TokenStall,
)
from rkio.engine.footprints import FootprintStore
from rkio.engine.ledger import SchedulerConfig
from rkio.engine.mailbox import Finished, Grant, Mailbox, Mailboxes
from rkio.engine.runners import Runner, RunnerFactory, RunnerPool
from rkio.engine.scheduler import Scheduler
from rkio.engine.types import (
    EngineEvent,
    ModelSpec,
)
from rkio.errors import InternalError, RkioError
from rkio.runtime.base import LoadParams

__all__ = ["Finished", "Grant", "Mailbox", "Runner", "RunnerFactory", "Supervisor"]  # the shell's names

log = logging.getLogger(__name__)


def scheduler_config(settings: Settings, budget: int) -> SchedulerConfig:
    return SchedulerConfig(budget=budget, npu_lanes=settings.npu_lanes, max_queue=settings.max_queue,
                           queue_timeout=settings.queue_timeout, keep_alive=settings.keep_alive,
                           reserved_domains=tuple(settings.reserved_domains))


class _Recovered:
    """Queue marker: the runners of a faulted scheduler are gone; start over with a fresh one."""


class Supervisor:
    """Implements ``Effects`` and owns the scheduler, the runners and their tasks."""

    def __init__(self, settings: Settings, runner_factory: RunnerFactory, footprints: FootprintStore,
                 budget: int, *, clock: Callable[[], float] = time.monotonic,
                 mem_probe: Callable[[], int | None] = meminfo.mem_available) -> None:
        self.settings = settings
        self.clock = clock
        self.footprints = footprints
        self._config = scheduler_config(settings, budget)
        self.scheduler = Scheduler(self._config, self, footprints.lookup)
        self._factory = runner_factory
        self._mem_probe = mem_probe
        self._events: asyncio.Queue[Event | _Recovered | None] = asyncio.Queue()
        self.mailboxes = Mailboxes()
        self.runners = RunnerPool(settings, runner_factory, self.post, self._spawn, mem_probe)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._watchers: list[asyncio.Future[None]] = []
        self._held: list[Event] | None = None  # events that arrived while recovering from a fault
        self._stale_ids = 0  # request ids up to this one belong to a faulted scheduler
        self.faults = 0

    # ------------------------------------------------------------------------------------ the loop

    def post(self, event: Event) -> None:
        self._events.put_nowait(event)

    async def run(self) -> None:
        """Drain events until ``close``; the only caller of the scheduler."""
        while (event := await self._events.get()) is not None:
            if isinstance(event, _Recovered):
                self._restart()
            elif self._held is not None:
                self._held.append(event)
            else:
                self._handle(event)
            for fut in self._watchers:
                if not fut.done():
                    fut.set_result(None)
            self._watchers.clear()

    def _handle(self, event: Event) -> None:
        if self._stale(event):
            return
        try:
            self._learn(event)
            self.scheduler.handle(event, self.clock())
        except Exception:
            # A bug: the scheduler's state is half-applied and cannot be trusted. End every request with an
            # explicit error, stop every runner (their memory comes back), and start over with a fresh one.
            log.exception("scheduler failed on %r; ending all requests and restarting the scheduler", event)
            self._fault()
        else:
            self._arm_timer()

    def _stale(self, event: Event) -> bool:
        rid = getattr(event, "request_id", None)
        return isinstance(event, GenerationDone | TokenStall) and rid is not None and rid <= self._stale_ids

    def _fault(self) -> None:
        self.faults += 1
        self._held = []
        self._stale_ids = self.mailboxes.last_id
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.mailboxes.fail_all(lambda: InternalError(
            "internal error in the scheduler (the server log has the details); please retry"))
        loads = self.runners.loads()
        self.runners.cancel_loads()
        self._spawn(self._recover(loads))

    async def _recover(self, loads: list[asyncio.Task[None]]) -> None:
        await asyncio.gather(*loads, return_exceptions=True)  # a cancelled load kills its own runner
        await self.runners.reap_all(self.settings.stop_grace)
        self._events.put_nowait(_Recovered())

    def _restart(self) -> None:
        old = self.scheduler
        self.scheduler = Scheduler(self._config, self, self.footprints.lookup)
        self.scheduler.counters = old.counters
        self.scheduler.failures, self.scheduler.quarantined = old.failures, old.quarantined
        held, self._held = self._held or [], None
        log.info("scheduler restarted after a fault; %d event(s) held meanwhile", len(held))
        for event in held:
            self._handle(event)
        self._arm_timer()

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
                self.footprints.learn(entry.spec, entry.ctx, event.memory)

    # ------------------------------------------------------------------------------------ requests

    def open_mailbox(self) -> tuple[int, Mailbox]:
        return self.mailboxes.open()

    def close_mailbox(self, request_id: int) -> None:
        self.mailboxes.close(request_id)

    def abandon(self, request_id: int, stream: AsyncGenerator[Any, None] | None, runner: Runner) -> None:
        """A granted client left: stop its generation, and free the lane once the runtime has returned."""
        self._spawn(self._abandon(request_id, stream, runner))

    async def _abandon(self, request_id: int, stream: AsyncGenerator[Any, None] | None,
                       runner: Runner) -> None:
        grace = self.settings.abort_grace
        outcome: Outcome = "cancelled"
        try:
            if stream is not None:  # aborts a generation suspended at a token, and waits for the runtime
                await asyncio.wait_for(stream.aclose(), grace)
            # A consumer cancelled while it awaited a token (every HTTP disconnect) only *sent* the abort,
            # and a prefill does not stop for it: the runtime is still running until it says otherwise.
            stopped = await runner.abort(grace)
        except TimeoutError:
            stopped = False
        except RkioError:
            stopped = not runner.alive  # it died while stopping: RunnerDied tells the scheduler
        except Exception:
            log.exception("abandoning generation %d failed", request_id)
            stopped = False
        if not stopped and runner.alive:
            outcome = "killed"
            await self.runners.kill(runner, f"the runtime did not stop within {grace:g} s of an abort")
        self.post(GenerationDone(request_id, outcome))

    # ------------------------------------------------------------------------------------ effects

    def grant(self, request_id: int, model: str, incarnation: int, load_s: float | None) -> GrantResult:
        box = self.mailboxes.get(request_id)
        if box is None or box.closed:
            return GrantResult.CLIENT_GONE
        runner = self.runners.live(model, incarnation)
        if runner is None:
            return GrantResult.RUNNER_GONE
        box.runner = runner
        box.items.put_nowait(Grant(runner, load_s, self.clock()))
        return GrantResult.GRANTED

    def abort(self, request_id: int, error: RkioError) -> None:
        box = self.mailboxes.get(request_id)
        if box is None or box.runner is None:
            return
        box.error = error
        self._spawn(self._abort(box.runner))

    async def _abort(self, runner: Runner) -> None:
        """The request's own task sees the runtime return (or the runner die) and frees the lane."""
        grace = self.settings.abort_grace
        try:
            stopped = await runner.abort(grace)
        except Exception:
            log.exception("aborting runner %s failed", runner.pid)
            stopped = False
        if not stopped and runner.alive:
            await self.runners.kill(runner, f"the runtime did not stop within {grace:g} s of an abort")

    def notify(self, request_id: int, event: EngineEvent) -> None:
        self.mailboxes.post(request_id, event)

    def finish(self, request_id: int, error: RkioError | None) -> None:
        self.mailboxes.post(request_id, Finished(error))

    # ------------------------------------------------------------------------------------ shutdown

    def start_load(self, model: str, incarnation: int, spec: ModelSpec, load: LoadParams) -> None:
        self.runners.start_load(model, incarnation, spec, load)

    def stop_runner(self, model: str, incarnation: int, reason: str) -> None:
        self.runners.stop_runner(model, incarnation, reason)

    def cancel_loads(self) -> None:
        self.runners.cancel_loads()

    def runner_of(self, model: str) -> Runner | None:
        """The loaded runner of ``model``, if any (for lease information)."""
        return self.runners.runner_of(model)

    async def reap_all(self, timeout: float) -> None:  # noqa: ASYNC109 (a bound, not a deadline API)
        await self.runners.reap_all(timeout)

    async def drain_tasks(self) -> None:
        """Cancel the shell's own tasks (reaps, stops, aborts) and wait for them to end."""
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
