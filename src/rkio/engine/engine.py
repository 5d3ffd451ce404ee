"""``ModelEngine``: the ``Engine`` the API layers call, built from the registry, scheduler and runners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rkio.config import Settings
from rkio.engine import calls, leases, meminfo, session
from rkio.engine.chunk_push import ChunkPush
from rkio.engine.events import Cancel, CloseLease, Request, Shutdown, Unload
from rkio.engine.footprints import FootprintStore
from rkio.engine.planner import derive_budget
from rkio.engine.run_plan import RunPlan, plan_generation
from rkio.engine.runner import prefix_cache
from rkio.engine.status import snapshot
from rkio.engine.supervisor import Finished, RunnerFactory, Supervisor
from rkio.engine.types import (
    EngineEvent,
    EngineStatus,
    GenerationRequest,
    LeaseInfo,
    LoadOverrides,
    ModelSpec,
    PrefixCacheSettings,
    RuntimeCall,
)
from rkio.errors import InvalidRequest, RkioError, RunnerCrashed, ShuttingDown
from rkio.runtime.base import LoadParams

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
        self._lease_loads: dict[str, LoadParams] = {}  # the load parameters each lease asked for
        self._lease_runtimes: dict[str, tuple[str, frozenset[str]]] = {}  # last seen runtime name, features

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
        """The model ``name`` runs on (a LoRA variant ``base:adapter``: its base). Raises ModelNotFound."""
        return self.registry.get(name)

    def model_ids(self) -> list[tuple[str, ModelSpec]]:
        """Every model id clients may ask for, with its model: LoRA variants follow their base."""
        return self.registry.variants()

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Derive the budget, start the scheduler loop, and begin loading preloaded and pinned models."""
        if self._sup is not None:
            return
        factory = self._factory
        if factory is None:
            from rkio.engine.runner import RunnerProcess

            factory = RunnerProcess.start
        factory = with_prefix_caches(factory, self.settings)
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

    def generate(self, request: GenerationRequest,
                 push: ChunkPush | None = None) -> AsyncGenerator[EngineEvent, None]:
        """Queue, load if needed, run. Raises RkioError subclasses; closing the iterator cancels.

        The session's own generator, so that a token passes one generator less on its way (the
        board-pace issue); the checks below run when the iteration starts, as before. Token chunks the
        consumer takes through ``push`` (``rkio.engine.chunk_push``) are not yielded.
        """
        return session.generate(lambda: self._prepare(request), push)

    def _prepare(self, request: GenerationRequest) -> tuple[Supervisor, ModelSpec, GenerationRequest]:
        spec, adapter = self.registry.resolve(request.model)
        if adapter is not None:  # a LoRA variant runs on its loaded base: no second instance, no reload
            request = replace(request, model=spec.name, lora=adapter)
        if request.lease is not None:
            spec = self._lease_spec(spec, request.lease)
            request = self._with_lease_sampling(request)
        if request.handle_state is not None or request.runtime_input is not None:
            request = calls.with_checked_paths(request, self.settings.models_dir, self.settings.state_dir)
        return self._supervisor(), spec, request

    def plan(self, request: GenerationRequest) -> RunPlan:
        """What ``request`` will get (whose sampling, what is left out), known before it runs."""
        spec = self.model(request.model)
        entry = self._sup.scheduler.models.get(spec.name) if self._sup is not None else None
        return plan_generation(spec, session.runner_generation(spec, request),
                               entry.features if entry is not None else frozenset())

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

    async def open_lease(self, model: str, load: LoadOverrides | None = None) -> str:
        """Load ``model`` and keep it resident (never evicted or expired) until the lease is closed.

        ``load`` overrides the model's RKLLMParam fields. The same parameters share a loaded instance;
        other parameters re-init an instance nobody else holds, and are refused (InvalidRequest naming
        the fields) while another lease holds it, unless the runtime applies them per run (sampling).
        """
        spec = self.model(model)
        wanted = leases.apply_overrides(spec.load, load)
        spec = replace(spec, load=wanted)
        lease = uuid.uuid4().hex
        try:
            await self._call(lambda rid: Request(rid, spec, "load", None, None, lease, True))
        except BaseException:
            # cancelled or failed: the caller never gets the id, so no lease may stay registered (the
            # scheduler may have completed the load just before the Cancel arrived)
            if self._sup is not None:
                self._sup.post(CloseLease(lease))
            raise
        self._lease_loads[lease] = wanted
        runner = self._supervisor().runner_of(model)
        if runner is not None:
            self._lease_runtimes[lease] = (runner.runtime_name, runner.features)
        return lease

    async def close_lease(self, lease: str) -> None:
        self._lease_loads.pop(lease, None)
        self._lease_runtimes.pop(lease, None)
        self._supervisor().post(CloseLease(lease))

    def lease_info(self, lease: str) -> LeaseInfo:
        """The lease's model instance: runtime, features and the load parameters in effect for it."""
        sup = self._supervisor()
        model = self._lease_model(lease)  # raises RunnerCrashed for a dead lease
        entry = sup.scheduler.models.get(model)
        wanted = self._lease_loads.get(lease) or self.model(model).load
        # during a managed re-init (a larger context) the instance is being replaced: report the last one
        runner = sup.runner_of(model)
        if runner is not None:
            self._lease_runtimes[lease] = (runner.runtime_name, runner.features)
        name, features = self._lease_runtimes.get(lease, ("", frozenset()))
        load = entry.load if entry is not None and entry.load is not None else wanted
        if wanted.sampling != load.sampling:
            load = replace(load, sampling=wanted.sampling)  # applied per run (see open_lease)
        return LeaseInfo(lease, model, name, features, load)

    async def runtime_call(self, lease: str, call: RuntimeCall) -> object:
        """Run ``call`` in the lease's runner once its handle is idle (queued like a generation)."""
        spec = self._lease_spec(self.model(self._lease_model(lease)), lease)
        return await calls.runtime_call(self._supervisor(), spec, lease, call)

    def _lease_spec(self, spec: ModelSpec, lease: str) -> ModelSpec:
        """The model as the lease opened it: its context need is the lease's, not the model's default."""
        wanted = self._lease_loads.get(lease)
        return spec if wanted is None else replace(spec, load=wanted)

    def _lease_model(self, lease: str) -> str:
        scheduler = self._supervisor().scheduler
        if lease in scheduler.dead_leases:
            raise RunnerCrashed(scheduler.dead_leases[lease])
        model = scheduler.leases.get(lease)
        if model is None:
            raise InvalidRequest(f"no open lease {lease!r}")
        return model

    def _with_lease_sampling(self, request: GenerationRequest) -> GenerationRequest:
        """A lease's own sampling, where it shares an instance loaded with other sampling (per-run)."""
        wanted = self._lease_loads.get(request.lease or "")
        entry = self._supervisor().scheduler.models.get(request.model)
        if wanted is None or entry is None or entry.load is None or entry.load.sampling == wanted.sampling:
            return request
        if request.runtime_input is not None:
            if request.runtime_input.sampling is not None:
                return request
            return replace(request, runtime_input=replace(request.runtime_input, sampling=wanted.sampling))
        return request if request.sampling is not None else replace(request, sampling=wanted.sampling)

    def status(self) -> EngineStatus:
        sup = self._supervisor()
        now = self._clock()
        return snapshot(sup.scheduler, now, time.time() - now)


def with_prefix_caches(factory: RunnerFactory, settings: Settings) -> RunnerFactory:
    """``factory`` with runners told where prompt caches of shared prefixes live: always with
    ``prompt_caches = "on"``; with "auto" once ``rkio probe --kv-reuse`` confirmed them for some runtime on
    this machine (the runner then checks its own runtime's confirmation)."""
    directory = calls.prompt_cache_dir(settings.state_dir)
    mode = settings.prompt_caches
    if mode == "off" or (mode == "auto" and not any((directory / prefix_cache.CONFIRMED).glob("*"))):
        return factory
    caches = PrefixCacheSettings(str(directory), mode, settings.prompt_cache_bytes,
                                 settings.prompt_cache_max_age)

    async def start(spec: ModelSpec, load: LoadParams, *, load_timeout: float = 120.0) -> Any:
        return await factory(replace(spec, prefix_caches=caches), load, load_timeout=load_timeout)

    return start
