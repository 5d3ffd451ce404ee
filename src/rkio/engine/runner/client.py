"""``RunnerProcess``: the gateway's asyncio handle on one runner process (one loaded model).

The runner runs in a fresh interpreter in its own session (so its process group can be killed as a whole
and a segfault or OOM kill takes only it down). Commands go over a socketpair, frames come back through
a pipe, the runner's stdout and stderr through another (``RunnerOutput``). A runner's death is seen at
once as EOF on the frame pipe; ``wait`` then reaps it through asyncio's child watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any, ClassVar

from rkio.engine.chunk_push import RunnerRelay
from rkio.engine.runner.child import TERM_GRACE_S, ChildProcess, Phase
from rkio.engine.runner.consumer_queue import ConsumerQueue
from rkio.engine.runner.frames import (
    Abort,
    Call,
    CallResult,
    Done,
    Error,
    FrameError,
    FrameSplitter,
    FromRunner,
    Generate,
    Load,
    Loaded,
    Memory,
    Progress,
    Relayed,
    RelayEnd,
    Stop,
    Stopped,
    Tokens,
    ToRunner,
    decode_all_from_runner,
    encode,
)
from rkio.engine.runner.memory import runner_memory
from rkio.engine.runner.messages import RunnerDone, RunnerExit, RunnerGeneration, RunnerMemory
from rkio.engine.runner.progress import LoadWork, made_progress
from rkio.engine.runner.relay_lender import RelayLender
from rkio.engine.runner.spawn import spawn_runner
from rkio.engine.runner.wire_errors import to_exception
from rkio.engine.types import ModelSpec, TokenChunk
from rkio.errors import LoadFailed, RunnerCrashed, RuntimeFailure
from rkio.runtime.base import LoadParams

log = logging.getLogger("rkio.runner")


class _Channel(asyncio.Protocol):
    """Splits the runner's output pipe into frames for its RunnerProcess."""

    def __init__(self, owner: RunnerProcess) -> None:
        self._owner = owner
        self._splitter = FrameSplitter()

    def data_received(self, data: bytes) -> None:
        try:
            frames = decode_all_from_runner(self._splitter.feed(data))
        except FrameError as exc:
            log.error("runner for %s: %s; killing it", self._owner.spec.name, exc)
            self._owner.kill()
            return
        self._owner._on_frames(frames)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._on_eof()


class RunnerProcess:
    """One runner process. Create with ``await RunnerProcess.start(...)``."""

    argv: ClassVar[tuple[str, ...]] = (sys.executable, "-m", "rkio.engine.runner")

    def __init__(self, spec: ModelSpec, proc: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self.pid: int = proc.pid
        self.runtime_name = ""
        self.features: frozenset[str] = frozenset()
        self.load_s: float | None = None
        self._child = ChildProcess(proc, f"runner {spec.name} [{proc.pid}]")
        self._output = self._child.output
        self._phase: Phase = "load"
        self._died_during: Phase | None = None
        self._transport: asyncio.Transport | None = None  # commands
        self._pipe: asyncio.ReadTransport | None = None  # frames
        self._memory: RunnerMemory | None = None
        self._loop = asyncio.get_running_loop()
        self._last_progress = self._loop.time()
        self._last_work: LoadWork | None = None
        self._loaded: asyncio.Future[Loaded | Error | None] = self._loop.create_future()
        self._queue = ConsumerQueue(self._loop, spec.name)
        self._lender = RelayLender(None, self._send)
        self._eof = False
        self._discard = False  # frames of a generation whose consumer went away
        self._runtime_idle = asyncio.Event()
        self._runtime_idle.set()
        self._consumer = False
        self._stopped = asyncio.Event()
        self._exit_task: asyncio.Task[RunnerExit] | None = None
        self._death_callbacks: list[Callable[[], None]] = []

    # ------------------------------------------------------------------------------------------ start

    @classmethod
    async def start(cls, spec: ModelSpec, load: LoadParams, *, env: Mapping[str, str] | None = None,
                    load_timeout: float = 120.0) -> RunnerProcess:
        """Start a runner and load the model. Returns once loaded.

        Raises LoadFailed (the runtime refused: message ends with its last "E ..." line, or the load made no
        progress for ``load_timeout`` seconds) or RunnerCrashed (the process died while loading).
        """
        proc, parent, frames_in, relay = await spawn_runner(cls.argv, env)
        runner = cls(spec, proc)
        runner._lender = RelayLender(relay, runner._send)
        try:
            pipe = os.fdopen(frames_in, "rb", buffering=0)
            runner._pipe, _ = await runner._loop.connect_read_pipe(lambda: _Channel(runner), pipe)
            transport, _ = await runner._loop.connect_accepted_socket(asyncio.Protocol, sock=parent)
            runner._transport = transport
            runner._send(Load(spec, load))
            await runner._await_loaded(load_timeout)
        except BaseException:
            runner.kill()
            await asyncio.shield(runner.wait())
            raise
        return runner

    async def _await_loaded(self, load_timeout: float) -> None:
        while not self._loaded.done():
            remaining = self._last_progress + load_timeout - self._loop.time()
            if remaining <= 0:
                self.kill()
                await self.wait()
                raise LoadFailed(f"load of {self.spec.name} stalled for {load_timeout:g} s "
                                 "(no CPU, memory or read progress); the runner was killed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._loaded), remaining)
        outcome = self._loaded.result()
        if isinstance(outcome, Loaded):
            self.runtime_name, self.load_s = outcome.runtime, outcome.load_s
            self.features = frozenset(outcome.features)
            self._memory = runner_memory(outcome.memory)
            self._phase = "idle"
            return
        if isinstance(outcome, Error):
            detail = await self._output.error_at(outcome.marker)
            # the runner exits on its own after a failed load
            try:
                await asyncio.wait_for(asyncio.shield(self.wait()), TERM_GRACE_S)
            except TimeoutError:
                self.kill()
                await self.wait()
            failure = to_exception(outcome, detail, default=LoadFailed)
            # whatever the runtime objected to (an unsupported LoRA, a bad parameter), the load failed
            raise failure if isinstance(failure, LoadFailed) else LoadFailed(failure.message)
        ended = await self.wait()
        raise RunnerCrashed(ended.describe(self.spec.name))

    # ------------------------------------------------------------------------------------------ frames

    def _send(self, message: ToRunner) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(encode(message))

    def _on_frames(self, frames: list[FromRunner]) -> None:
        for frame in frames:
            if isinstance(frame, Tokens):
                if not self._discard and self._queue.offer(frame):
                    self._lender.offer(self._queue.taken, self._transport)
            elif isinstance(frame, Relayed):
                self._lender.relayed(frame)
            elif isinstance(frame, RelayEnd):
                self._lender.ended(frame)
            elif isinstance(frame, Error) and not self._loaded.done():
                self._loaded.set_result(frame)
            elif isinstance(frame, Done | Error | CallResult):
                if isinstance(frame, Done) and frame.memory is not None:
                    self._memory = runner_memory(frame.memory)
                self._runtime_idle.set()
                if self._phase == "generation":
                    self._phase = "idle"
                if self._discard:
                    self._discard = False
                else:
                    self._queue.put(frame)
            elif isinstance(frame, Loaded):
                if not self._loaded.done():
                    self._loaded.set_result(frame)
            elif isinstance(frame, Progress):
                if made_progress(self._last_work, frame.work):
                    self._last_work, self._last_progress = frame.work, self._loop.time()
            elif isinstance(frame, Memory):
                self._memory = runner_memory(frame.memory)
            elif isinstance(frame, Stopped):
                self._stopped.set()

    def _on_eof(self) -> None:
        self._eof = True
        if self._died_during is None:
            self._died_during = self._phase
        self._runtime_idle.set()
        self._stopped.set()
        self._lender.gone()
        if not self._loaded.done():
            self._loaded.set_result(None)
        self._queue.close()
        callbacks, self._death_callbacks = self._death_callbacks, []
        for callback in callbacks:
            callback()

    @property
    def alive(self) -> bool:
        """False from the moment the frame pipe closed: the runner is dead, or exiting."""
        return not self._eof and self._child.running

    def when_dead(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the frame pipe closes (from the event loop, soon, if it already has)."""
        if self._eof:
            self._loop.call_soon(callback)
        else:
            self._death_callbacks.append(callback)

    # ------------------------------------------------------------------------------------------ generate

    def memory(self) -> RunnerMemory | None:
        """The last measurement the runner reported (after load, after each generation)."""
        return self._memory

    async def generate(self, gen: RunnerGeneration, push: Callable[[TokenChunk], bool] | None = None,
                       relay: RunnerRelay | None = None) -> AsyncGenerator[TokenChunk | RunnerDone, None]:
        """Run one generation: TokenChunks (each batching whatever tokens were ready), then one RunnerDone.

        Chunks ``push`` takes (``rkio.engine.chunk_push``) are not yielded: it is offered a frame from the
        pipe's read callback while this generator waits with nothing queued. ``relay``: the consumer's
        socket, lent to the runner whenever the consumer has written everything (``RelayLender``); the
        tokens the runner writes there are neither pushed nor yielded.

        Raises RunnerCrashed when the runner dies meanwhile, or the runner's RuntimeFailure /
        ContextLengthExceeded / Unsupported / InvalidRequest. Closing the iterator early (``aclose``)
        aborts the generation and returns once the runtime has stopped (bound it with a timeout: a hung
        runtime never stops); cancelling the consumer only sends the abort.
        """
        if self._consumer:
            raise RuntimeFailure(f"runner for {self.spec.name} is already generating")
        self._consumer = True
        finished = False
        try:
            await self._begin(Generate(gen))
            queue = self._queue
            queue.push = push
            lender = self._lender
            lender.begin(relay)
            while True:
                if relay is not None and not queue.queued:
                    lender.offer(queue.taken, self._transport)  # all it took is written by now
                frame = await queue.get()
                if frame is None:
                    finished = True
                    raise await self._gone()
                if isinstance(frame, Tokens):
                    yield queue.chunk(frame)
                elif isinstance(frame, Done):
                    finished = True
                    await lender.back()  # the consumer must not write its end while the runner may
                    yield RunnerDone(frame.finish, frame.prompt_tokens,  # type: ignore[arg-type]
                                     frame.completion_tokens, frame.perf, runner_memory(frame.memory),
                                     frame.outputs, frame.stop_sequence)
                    return
                elif isinstance(frame, Error):
                    finished = True
                    await lender.back()
                    raise to_exception(frame, await self._output.error_at(frame.marker))
        except GeneratorExit:
            # aclose(): the caller waits (with its own timeout) until the runtime has really stopped
            if not finished and self._abandon():
                await self._runtime_idle.wait()
                await self._lender.back()
            raise
        finally:
            self._consumer = False
            self._queue.release()
            self._lender.release()
            if not finished:
                self._abandon()

    async def call(self, op: str, args: dict[str, Any], owner: str) -> object:
        """Run a runtime call (``rkio.engine.runner.calls``) on the idle handle for ``owner``.

        Raises RunnerCrashed when the runner dies meanwhile, or what the runtime raised (Unsupported,
        InvalidRequest, RuntimeFailure). Cancelling only stops waiting: the call itself is short and runs
        to its end, and the next generation waits for it.
        """
        if self._consumer:
            raise RuntimeFailure(f"runner for {self.spec.name} is already generating")
        self._consumer = True
        try:
            await self._begin(Call(op, args, owner))
            while True:
                frame = await self._queue.get()
                if frame is None:
                    raise await self._gone()
                if isinstance(frame, CallResult):
                    return frame.value
                if isinstance(frame, Error):
                    raise to_exception(frame, await self._output.error_at(frame.marker))
        finally:
            self._consumer = False
            self._queue.release()

    async def _begin(self, command: Generate | Call) -> None:
        """Send ``command`` once the runtime is idle; its answer frames go to the one consumer."""
        await self._runtime_idle.wait()
        if self._eof or self._phase not in ("idle", "generation"):
            raise await self._gone()
        self._queue.clear()
        self._runtime_idle.clear()
        self._phase = "generation"
        self._send(command)

    def _abandon(self) -> bool:
        """Abort the generation nobody consumes any more; False when the runtime is not running it."""
        if self._phase != "generation" or self._eof or self._runtime_idle.is_set():
            return False
        if not self._discard:
            self._discard = True
            self._queue.clear()
            self._send(Abort())
        return True

    async def _gone(self) -> RunnerCrashed:
        ended = await self.wait()
        return RunnerCrashed(ended.describe(self.spec.name))

    # ------------------------------------------------------------------------------------------ lifecycle

    async def abort(self, timeout: float) -> bool:  # noqa: ASYNC109 (pinned interface)
        """Ask the runtime to stop the running generation; True once it has (at once if it was idle).

        False if it still runs after ``timeout`` seconds. An abandoned generation's abort was already
        sent: this then only waits for the runtime's answer.
        """
        if self._runtime_idle.is_set():
            return True
        if not self._discard:
            self._send(Abort())
        try:
            await asyncio.wait_for(self._runtime_idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, grace: float) -> RunnerExit:
        """Abort, destroy the handle, end the process (SIGTERM, then SIGKILL to its group), reap it."""
        if self._child.running and not self._eof:
            if not await self.abort(grace):
                self.kill()
            self._phase = "stop"
            self._send(Stop())
            try:
                await asyncio.wait_for(asyncio.shield(self.wait()), grace)
            except TimeoutError:
                self._child.signal_group(signal.SIGTERM)
                try:
                    await asyncio.wait_for(asyncio.shield(self.wait()), min(grace, TERM_GRACE_S))
                except TimeoutError:
                    self.kill()
        return await self.wait()

    def kill(self) -> None:
        """SIGKILL the runner's process group now."""
        self._child.signal_group(signal.SIGKILL)

    async def wait(self) -> RunnerExit:
        """Resolves when the process has been reaped, with how it ended."""
        if self._exit_task is None:
            self._exit_task = asyncio.ensure_future(self._reap())
        return await asyncio.shield(self._exit_task)

    async def _reap(self) -> RunnerExit:
        code = await self._child.exit_code()
        if self._died_during is None:
            self._died_during = self._phase
        await self._child.drain_output()
        for transport in (self._transport, self._pipe):
            if transport is not None:
                transport.close()
        self._lender.close()
        return self._child.exit(code, self._died_during)
