"""``ModelEngine``: the ``Engine`` the API layers call, built from the registry, scheduler and runners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from rkio.config import Settings
from rkio.engine import meminfo, session
from rkio.engine.events import Cancel, CloseLease, Request, Shutdown, Unload
from rkio.engine.footprints import FootprintStore
from rkio.engine.planner import derive_budget
from rkio.engine.status import snapshot
from rkio.engine.supervisor import Finished, RunnerFactory, Supervisor
from rkio.engine.types import EngineEvent, EngineStatus, GenerationRequest, ModelSpec
from rkio.errors import RkioError, ShuttingDown

if TYPE_CHECKING:
    from rkio.engine.registry import ModelRegistry

log = logging.getLogger(__name__)


class ModelEngine:
    """Loads models on demand into one runner process each and serves generations through the scheduler.

    ``runner_factory(spec, load, load_timeout=...)`` starts a loaded runner (default
    ``RunnerProcess.start``); tests inject fakes. ``mem_probe`` returns MemAvailable in bytes.
    """

    def __init__(self, settings: Settings, registry: ModelRegistry | None = None,
                 runner_factory: RunnerFactory | None = None, *,
                 mem_probe: Callable[[], int | None] = meminfo.mem_available,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._registry = registry
        self._factory = runner_factory
        self._mem_probe = mem_probe
        self._clock = clock
        self._sup: Supervisor | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------------------------ registry

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            from rkio.engine.registry import ModelRegistry

            kinds = None if self.settings.runtime == "auto" else (self.settings.runtime,)
            self._registry = ModelRegistry(self.settings.models_dir, runtimes=kinds)
        return self._registry

    def models(self) -> list[ModelSpec]:
        return self.registry.list()

    def model(self, name: str) -> ModelSpec:
        """Raises ModelNotFound."""
        return self.registry.get(name)

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Derive the budget, start the scheduler loop, and begin loading preloaded and pinned models."""
        if self._sup is not None:
            return
        factory = self._factory
        if factory is None:
            from rkio.engine.runner import RunnerProcess

            factory = RunnerProcess.start
        budget = derive_budget(self.settings.memory_budget, self._mem_probe() or 0, 0,
                               self.settings.memory_reserve)
        self._sup = Supervisor(self.settings, factory, FootprintStore(self.settings.state_dir), budget,
                               clock=self._clock, mem_probe=self._mem_probe)
        self._loop_task = asyncio.get_running_loop().create_task(self._sup.run())
        log.info("memory budget %d bytes, %d NPU lane(s)", budget, self.settings.npu_lanes)
        names = list(self.settings.preload)
        with contextlib.suppress(RkioError, OSError):
            names += [s.name for s in self.models() if s.pinned and s.name not in names]
        for name in names:
            task = asyncio.get_running_loop().create_task(self._preload(name))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _preload(self, name: str) -> None:
        try:
            await self.load(name)
        except RkioError as exc:
            log.warning("preloading %s failed: %s", name, exc.message)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting work, let generations finish for ``grace`` s, abort the rest, stop runners.

        Returns only when every runner has been reaped (killed if it would not stop) and the shell's
        tasks have ended: no process and no reservation outlives the engine.
        """
        sup = self._sup
        if sup is None:
            return
        sup.post(Shutdown())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(sup.until(lambda: not sup.scheduler.running), grace)
        sup.post(Shutdown(abort=True))
        sup.cancel_loads()
        limit = self.settings.abort_grace + self.settings.stop_grace + meminfo.RECOVERY_CAP_S
        try:
            await asyncio.wait_for(sup.until(sup.scheduler.idle), limit)
        except TimeoutError:
            log.warning("runners still alive after shutdown; killing them")
        await sup.reap_all(self.settings.stop_grace)
        sup.close()
        if self._loop_task is not None:
            await self._loop_task
        await sup.drain_tasks()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._sup = None

    # ------------------------------------------------------------------------------------ requests

    def _supervisor(self) -> Supervisor:
        if self._sup is None:
            raise ShuttingDown("the engine is not running")
        return self._sup

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineEvent]:
        """Queue, load if needed, run. Raises RkioError subclasses; closing the iterator cancels.

        ``aclosing``: closing this iterator closes the session's at once (aborting the generation), not
        later from a finaliser task.
        """
        spec = self.model(request.model)
        async with contextlib.aclosing(session.generate(self._supervisor(), spec, request)) as events:
            async for event in events:
                yield event

    async def _call(self, make: Callable[[int], Any]) -> None:
        """Post a request and wait for its ``Finished``; a caller that gives up withdraws it (``Cancel``)."""
        sup = self._supervisor()
        rid, box = sup.open_mailbox()
        finished = False
        try:
            sup.post(make(rid))
            while True:
                item = await box.items.get()
                if isinstance(item, Finished):
                    finished = True
                    if item.error is not None:
                        raise item.error
                    return
        finally:
            sup.close_mailbox(rid)
            if not finished:
                sup.post(Cancel(rid))

    async def load(self, model: str, keep_alive: float | None = None) -> None:
        """Load ``model`` (if needed) and keep it for ``keep_alive`` seconds (None = default, < 0 forever)."""
        spec = self.model(model)
        await self._call(lambda rid: Request(rid, spec, "load", None, keep_alive))

    async def unload(self, model: str) -> None:
        """Stop ``model``'s runner once idle; returns when its memory is back. No-op if not loaded."""
        await self._call(lambda rid: Unload(rid, model))

    async def open_lease(self, model: str) -> str:
        """Load ``model`` and keep it resident (never evicted or expired) until the lease is closed."""
        spec = self.model(model)
        lease = uuid.uuid4().hex
        try:
            await self._call(lambda rid: Request(rid, spec, "load", None, None, lease, True))
        except BaseException:
            # cancelled or failed: the caller never gets the id, so no lease may stay registered (the
            # scheduler may have completed the load just before the Cancel arrived)
            if self._sup is not None:
                self._sup.post(CloseLease(lease))
            raise
        return lease

    async def close_lease(self, lease: str) -> None:
        self._supervisor().post(CloseLease(lease))

    def status(self) -> EngineStatus:
        sup = self._supervisor()
        now = self._clock()
        return snapshot(sup.scheduler, now, time.time() - now)
