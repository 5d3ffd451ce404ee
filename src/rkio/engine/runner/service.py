"""The runner process's main loop: one runtime handle, one generation at a time.

Threads: the main thread runs commands (load, generate, stop) and is blocked inside the runtime while it
generates; a reader thread receives frames and calls ``runtime.abort()`` directly when an Abort arrives;
the writer thread (``TokenWriter``) sends tokens; a heartbeat thread sends Progress while loading.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rkio.engine.runner import calls, chat_turn, handle_state, prefix_cache, vision
from rkio.engine.runner.frames import (
    Abort,
    Call,
    CallResult,
    Done,
    Error,
    FrameError,
    FrameSplitter,
    Generate,
    Load,
    Loaded,
    Memory,
    Progress,
    Reclaim,
    Relay,
    Stop,
    Stopped,
    ToRunner,
    decode_to_runner,
)
from rkio.engine.runner.memory import LoadDrop, measure
from rkio.engine.runner.progress import LoadWorkMeter
from rkio.engine.runner.prompt import model_template, prepare, prompt_tokens, shared_prefix
from rkio.engine.runner.stops import StopScanner
from rkio.engine.runner.writer import TokenWriter
from rkio.engine.types import ModelSpec
from rkio.errors import RkioError, Unsupported
from rkio.runtime.base import Feature, LoraAdapter, Runtime, Token

if TYPE_CHECKING:
    from rkio.runtime.chat import ChatTemplate

log = logging.getLogger("rkio.runner")

RuntimeFactory = Callable[[ModelSpec], Runtime]
IDLE_WAIT_S = 10.0  # how long stop waits for is_running() to drop after an abort before destroying anyway
# Once the gateway is gone: time for the abort, that wait and the destroy, then the runner exits hard.
ORPHAN_EXIT_S = IDLE_WAIT_S + 2.0
EXIT_ORPHANED = 4


def exit_orphaned() -> None:
    """The gateway is gone and the runtime does not stop: leave, so the kernel frees what it holds."""
    log.error("the gateway is gone and the runtime ignored the abort for %.0f s; exiting", ORPHAN_EXIT_S)
    os._exit(EXIT_ORPHANED)
SYNC_LINE = "rkio-runner: sync {}\n"
RELAY_FD_WAIT_S = 1.0  # the descriptor is sent before its Relay frame: it is there, or never comes


class RunnerService:
    """Serves one model: commands arrive on ``sock``, frames leave through the pipe ``out_fd``.

    Runs until told to stop or the gateway goes away (EOF on ``sock``). A runtime that ignores the abort then
    (a hung NPU job) would keep the process, its NPU memory and the NPU itself with nobody left to kill it,
    so ``orphaned`` (default: exit the process) runs if ``serve`` has not returned ``orphan_exit_s`` later.
    """

    def __init__(self, sock: socket.socket, out_fd: int, runtime_factory: RuntimeFactory, *,
                 relay_sock: socket.socket | None = None, heartbeat_s: float = 1.0, stderr_fd: int = 2,
                 orphan_exit_s: float = ORPHAN_EXIT_S,
                 orphaned: Callable[[], None] = exit_orphaned) -> None:
        self._sock = sock
        self._relay_sock = relay_sock  # client sockets lent for a relay arrive here (SCM_RIGHTS)
        if relay_sock is not None:
            relay_sock.settimeout(RELAY_FD_WAIT_S)
        self._factory = runtime_factory
        self._heartbeat_s = heartbeat_s
        self._stderr_fd = stderr_fd
        self._writer = TokenWriter(out_fd)
        self._commands: queue.Queue[ToRunner | None] = queue.Queue()
        self._runtime: Runtime | None = None
        self._spec: ModelSpec | None = None
        self._template: ChatTemplate | None = None
        self._holds = handle_state.HandleHolds(chat_template=None)
        self._max_context = 0  # the loaded context (max_context_len; <= 0 before a load: unknown)
        self._prefixes: prefix_cache.PrefixCacheStore | None = None
        self._state_lock = threading.Lock()
        self._generating = False
        self._aborted = False
        self._markers = 0
        self._orphan_exit_s = orphan_exit_s
        self._orphaned = orphaned
        self._served = threading.Event()
        self._drop = LoadDrop()  # what the load took from the machine (see LoadDrop)
        self._vision: vision.VisionEncoder | None = None  # a vision model's image encoder

    # ------------------------------------------------------------------------------------------ threads

    def serve(self) -> int:
        reader = threading.Thread(target=self._read, name="rkio-runner-reader", daemon=True)
        reader.start()
        code = 0
        while True:
            command = self._commands.get()
            if command is None or isinstance(command, Stop):
                self._shutdown(notify=command is not None)
                break
            if isinstance(command, Load):
                if not self._load(command):
                    code = 3
                    self._shutdown(notify=False)
                    break
            elif isinstance(command, Generate):
                self._generate(command)
            elif isinstance(command, Call):
                self._call(command)
        self._writer.close()
        self._served.set()
        return code

    def _read(self) -> None:
        splitter = FrameSplitter()
        try:
            while True:
                data = self._sock.recv(1 << 16)
                if not data:
                    break
                for body in splitter.feed(data):
                    frame = decode_to_runner(body)
                    if isinstance(frame, Abort | Stop):
                        self._abort()
                    if isinstance(frame, Relay):  # the main thread is inside the runtime: answer here
                        self._writer.relay(frame, self._lent_fd())
                    elif isinstance(frame, Reclaim):
                        self._writer.reclaim()
                    elif not isinstance(frame, Abort):
                        self._commands.put(frame)
        except (OSError, FrameError) as exc:
            log.error("runner input failed: %s", exc)
        # the gateway is gone (or said nothing more): stop whatever runs, destroy, exit
        self._abort()
        self._commands.put(None)
        if not self._served.wait(self._orphan_exit_s):
            self._orphaned()

    def _lent_fd(self) -> int | None:
        """The client socket the gateway sent just before its Relay frame."""
        if self._relay_sock is None:
            return None
        try:
            # close-on-exec: a process the runtime starts must not keep a client's connection open
            _, fds, _, _ = socket.recv_fds(self._relay_sock, 1, 1, socket.MSG_CMSG_CLOEXEC)
        except OSError as exc:
            log.error("no client socket came with a relay: %s", exc)
            return None
        return fds[0] if fds else None

    def _abort(self) -> None:
        with self._state_lock:
            if self._generating and self._runtime is not None:
                self._aborted = True
                self._runtime.abort()

    def _heartbeat(self, done: threading.Event, started: float) -> None:
        # the first beat at once: the interpreter's start-up must not eat into the gateway's stall timeout
        meter = LoadWorkMeter()
        self._writer.send(Progress(0.0, meter.read()))
        while not done.wait(self._heartbeat_s):
            self._writer.send(Progress(time.monotonic() - started, meter.read()))

    # ------------------------------------------------------------------------------------------ commands

    def _load(self, command: Load) -> bool:
        started = time.monotonic()
        self._drop.start()
        done = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(done, started), name="rkio-runner-heartbeat",
                                daemon=True)
        beat.start()
        try:
            # the encoder first: it must have domain 0 (librknnrt cannot choose), the LLM loads after it
            self._vision = vision.open_encoder(command.spec)
            runtime = self._factory(command.spec)
            self._runtime, self._spec = runtime, command.spec
            runtime.load(vision.load_params(command.spec, command.params))
            self._max_context = command.params.max_context_len
            if Feature.CHAT_TEMPLATE in runtime.features:
                # prompts arrive rendered with the model's template; the runtime must not wrap them again
                runtime.set_chat_template(handle_state.RKIO_TEMPLATE)
            self._holds = handle_state.HandleHolds.after_load(runtime.features)
            caches = command.spec.prefix_caches
            if Feature.PROMPT_CACHE in runtime.features and prefix_cache.enabled(caches, runtime.name):
                assert caches is not None
                self._prefixes = prefix_cache.PrefixCacheStore(caches)
            for name, path, scale in command.spec.lora_adapters:
                runtime.load_lora(LoraAdapter(path=path, name=name, scale=scale))
        except BaseException as exc:
            done.set()
            beat.join()
            self._send_error(exc, default="LoadFailed")
            return False
        done.set()
        beat.join()
        self._writer.send(Loaded(runtime.name, sorted(f.value for f in runtime.features),
                                 time.monotonic() - started, measure(available_drop=self._drop.sample())))
        return True

    def _generate(self, command: Generate) -> None:
        runtime, spec = self._runtime, self._spec
        if runtime is None or spec is None:
            self._send_error(RkioError("no model loaded"), default="RuntimeFailure")
            return
        gen = command.gen
        try:
            if gen.messages is not None and self._template is None:
                self._template = model_template(runtime, spec)
            placed = vision.with_placeholders(gen, self._vision)
            params, stops = prepare(placed, runtime, spec, self._template)
            params = vision.to_multimodal(params, placed, self._vision, runtime.features)
        except BaseException as exc:
            self._send_error(exc, default="InvalidRequest")
            return
        try:
            prefix = None
            if self._prefixes is not None and self._template is not None and params.prompt is not None:
                prefix = shared_prefix(gen, self._template, params.prompt)
            params, wanted, turn = chat_turn.begin(gen, params, runtime, spec, self._holds, self._context(),
                                                   self._prefixes, prefix)
            handle_state.apply(runtime, self._holds, wanted)
        except BaseException as exc:
            self._send_error(exc, default="RuntimeFailure")
            return
        limit = gen.params.max_new_tokens if gen.params.max_new_tokens != params.max_new_tokens else None
        scanner = StopScanner(stops) if stops else None
        writer = self._writer
        writer.first_token_next()
        push = writer.push
        count = 0
        cut = ""  # why the runner ended the stream itself: "stop" (stop string) or "length"

        collect = turn.generated.append if turn is not None else None

        def on_token(token: Token) -> bool:
            # The reply may end at a stop string or at the limit while the runtime would have stopped
            # there anyway (EOS), so the runtime is stopped only when it delivers one token more: a stop
            # then interrupts a run that is really still going, and a reply that ends by itself is never
            # aborted (issue 11: a stray rkllm_abort after every run). The cost is one token's time.
            nonlocal count, cut
            if cut:
                return False
            count += 1
            if collect is not None:
                collect(token.text)  # what the KV cache now holds of the reply, stop strings and all
            if scanner is None:
                push(token.text, token.token_id)
            else:
                text, ids = scanner.feed(token.text, token.token_id)
                if text or ids:
                    writer.push_many(text, ids)
                if scanner.stopped:
                    cut = "stop"
            if not cut and limit is not None and count >= limit:
                cut = "length"
            return True

        with self._state_lock:
            self._generating, self._aborted = True, False
        try:
            result = runtime.generate(params, on_token)
        except BaseException as exc:
            with self._state_lock:
                self._generating = False
            self._send_error(exc, default="RuntimeFailure")
            # no Done carries a measurement this time; a failed run may still have grown the process
            self._writer.send(Memory(measure(available_drop=self._drop.sample())))
            return
        with self._state_lock:
            self._generating = False
            aborted = self._aborted
        if scanner is not None:
            text, ids = scanner.flush()
            if text or ids:
                writer.push_many(text, ids)
        finish = cut or ("abort" if aborted else "stop" if result.finish == "paused" else result.finish)
        if turn is not None:
            try:
                chat_turn.finish(turn, runtime, self._holds, result.finish, cut=bool(cut) or aborted,
                                 perf=result.perf, max_context_len=self._context())
            except RkioError as exc:
                log.warning("KV cache length unknown after the run (%s): cleared next time", exc)
        perf = result.perf
        memory = measure(perf.memory_usage_mb if perf is not None else None,
                         available_drop=self._drop.sample())
        self._drop.freeze()
        matched = scanner.matched if scanner is not None and cut == "stop" else None
        writer.send(Done(finish, prompt_tokens(params, perf, runtime), count, perf, memory, result.outputs,
                         matched))

    def _context(self) -> int:
        """The loaded context length; 0 when unknown (the runtime's limit: then no run reuses the cache)."""
        return max(0, self._max_context)

    def _call(self, command: Call) -> None:
        runtime = self._runtime
        if runtime is None:
            self._send_error(RkioError("no model loaded"), default="RuntimeFailure")
            return
        try:
            if command.op in vision.OPS:
                value = vision.perform(self._vision, command.op, command.args)
            else:
                value = calls.perform(runtime, self._holds, command.op, command.args, command.owner)
        except BaseException as exc:
            self._send_error(exc, default="RuntimeFailure")
            return
        self._writer.send(CallResult(value))

    def _shutdown(self, *, notify: bool) -> None:
        runtime = self._runtime
        if runtime is not None:
            self._runtime = None
            try:
                # destroying a handle that still runs makes the NPU fail submissions (rkllm #289)
                deadline = time.monotonic() + IDLE_WAIT_S
                while runtime.is_running() and time.monotonic() < deadline:
                    time.sleep(0.01)
                runtime.destroy()
            except BaseException as exc:
                log.error("destroying the runtime failed: %s", exc)
        if self._vision is not None:
            self._vision.close()
            self._vision = None
        if notify:
            self._writer.send(Stopped())

    # ------------------------------------------------------------------------------------------ errors

    def _send_error(self, exc: BaseException, *, default: str) -> None:
        """Report ``exc`` after a sync line on stderr, so the gateway pairs it with the runtime's output."""
        self._markers += 1
        with contextlib.suppress(OSError):
            os.write(self._stderr_fd, SYNC_LINE.format(self._markers).encode())
        if isinstance(exc, RkioError):
            # the nearest public class: subclasses defined elsewhere (e.g. TemplateError) keep their status
            kind = next(c.__name__ for c in type(exc).__mro__ if c.__module__ == RkioError.__module__)
            message = exc.message
        else:
            kind, message = default, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        feature = exc.feature if isinstance(exc, Unsupported) else None
        runtime = exc.runtime if isinstance(exc, Unsupported) else None
        self._writer.send(Error(kind, message, self._markers, feature, runtime))
