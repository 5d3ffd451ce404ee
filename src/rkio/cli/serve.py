"""``rkio serve``: the HTTP server (OpenAI- and Ollama-compatible APIs) over the model engine.

Every flag is also a setting: ``RKIO_<NAME>`` in the environment or ``<name>`` in a TOML file (``--config`` or
``RKIO_CONFIG``); flags win over the environment, which wins over the file.
A bad value is a one-line error naming the flag, variable or key it came from, and exit status 2.
Only one engine may own a board's NPU: a second ``rkio serve`` exits at once with status 1 (see
``rkio.engine.npu_lock`` for the lock file, ``--npu-lock`` to choose another).
Shutdown on SIGTERM/SIGINT: stop accepting connections, let in-flight requests finish for ``stop_grace``
seconds (then streams end with a "shutting down" error event), stop the engine, exit 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn

from rkio.cli.npu_claim import claim_npu
from rkio.config import Settings
from rkio.errors import ConfigError

if TYPE_CHECKING:
    from rkio.api.readiness import Readiness

log = logging.getLogger("rkio.serve")

# (flag, Settings field, metavar, help)
FLAGS: tuple[tuple[str, str, str, str], ...] = (
    ("--host", "host", "ADDR", "address to listen on (default 127.0.0.1; set --api-key before exposing it)"),
    ("--port", "port", "N", "port (default 8080)"),
    ("--models-dir", "models_dir", "DIR", "models directory (default ~/.rkio/models)"),
    ("--state-dir", "state_dir", "DIR", "learned footprints, cooldowns (default ~/.rkio/state)"),
    ("--runtime", "runtime", "auto|rkllm|llamacpp", "backend for models (default auto)"),
    ("--memory-budget", "memory_budget", "SIZE", "memory for models, e.g. 6GiB (default: from MemAvailable)"),
    ("--memory-reserve", "memory_reserve", "SIZE", "kept free when deriving the budget (default 512MiB)"),
    ("--max-queue", "max_queue", "N", "waiting requests before 429 (default 64)"),
    ("--queue-timeout", "queue_timeout", "DUR", "longest wait in the queue (default 5m)"),
    ("--keep-alive", "keep_alive", "DUR", "idle time before a model unloads; -1 = never (default 5m)"),
    ("--api-key", "api_key", "KEY",
     "require Authorization: Bearer KEY (or x-api-key: KEY) on every endpoint but /health"),
    ("--npu-lanes", "npu_lanes", "N", "concurrent generations (default 1)"),
    ("--load-timeout", "load_timeout", "DUR", "a load without progress for this long fails (default 2m)"),
    ("--first-token-timeout", "first_token_timeout", "DUR", "prefill watchdog (default 2m)"),
    ("--token-stall-timeout", "token_stall_timeout", "DUR", "inter-token watchdog (default 30s)"),
    ("--stop-grace", "stop_grace", "DUR", "shutdown grace for in-flight requests (default 10s)"),
    ("--preload", "preload", "M1,M2", "models to load at start"),
    ("--reserved-domains", "reserved_domains", "D1,D2", "IOMMU domains kept free (e.g. 0 for RKNN)"),
    ("--cors-origins", "cors_origins", "O1,O2", "origins allowed by CORS (default: CORS off)"),
    ("--max-body-bytes", "max_body_bytes", "SIZE", "largest request body (default 8MiB)"),
    ("--default-model", "default_model", "NAME", "model for OpenAI requests that name none"),
    ("--log-level", "log_level", "LEVEL", "debug, info, warning or error (default info)"),
    ("--rpc-unix", "rpc_unix", "PATH", "JSON-RPC Unix socket (default <state dir>/rpc.sock; off to disable)"),
    ("--rpc-tcp", "rpc_tcp", "HOST:PORT", "also serve JSON-RPC on TCP (newline-delimited)"),
    ("--rpc-udp", "rpc_udp", "HOST:PORT", "also serve JSON-RPC on UDP (one message per datagram)"),
    ("--rpc-lease-ttl", "rpc_lease_ttl", "DUR", "idle expiry of HTTP/UDP handle ids (default 10m)"),
    ("--rpc-stream-ttl", "rpc_stream_ttl", "DUR", "expiry of an undrained HTTP pull stream (default 60s)"),
    ("--rpc-stream-default", "rpc_stream_default", "push|callbacks",
     "how rkllm.run streams without a stream param (callbacks: stand in for nano)"),
    ("--rpc-max-frame", "rpc_max_frame", "SIZE", "largest JSON-RPC message (default 16MiB)"),
    ("--npu-lock", "npu_lock", "FILE", "the machine-wide lock that makes this the board's only engine "
                                       "(default /run/lock/rkio-npu.lock, see the docs)"),
    ("--board-name", "board_name", "NAME", "sent as the X-Rkio-Board response header (default: host name)"),
)
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def register(subparsers: Any) -> None:
    """Add ``serve``."""
    parser = subparsers.add_parser("serve", help="run the HTTP server (OpenAI and Ollama APIs)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file (also $RKIO_CONFIG)")
    for flag, dest, metavar, text in FLAGS:
        choices = {"runtime": ("auto", "rkllm", "llamacpp"),
                   "rpc_stream_default": ("push", "callbacks")}.get(dest)
        parser.add_argument(flag, dest=dest, metavar=metavar, help=text, choices=choices)
    parser.set_defaults(func=run)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run(args: argparse.Namespace) -> int:
    overrides = {dest: getattr(args, dest, None) for _, dest, _, _ in FLAGS}
    try:
        settings = Settings.load(args.config, overrides)
    except ConfigError as exc:
        print(f"rkio serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    with contextlib.ExitStack() as stack:
        lock = claim_npu(stack, settings.npu_lock, "rkio serve")  # before anything looks at a runtime
        if lock is None:
            return 1
        log.info("holding the NPU lock %s", lock)
        if settings.runtime == "auto":
            from rkio.runtime.select import runtime_decision

            decision = runtime_decision("auto")
            log.info("runtime auto: NPU runtime preferred is %s (%s); serving every model kind whose runtime "
                     "is installed", decision.kind, decision.reason)
        if settings.host not in LOOPBACK and not settings.api_key:
            log.warning("listening on %s without an API key: anyone who can reach it can use it",
                        settings.host)
        return serve(settings)


def serve(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean shutdown, 1 if startup failed."""
    from rkio.api.app import create_app
    from rkio.engine.engine import ModelEngine
    from rkio.runtime.select import installed_runtimes

    kinds = installed_runtimes() if settings.runtime == "auto" else frozenset({settings.runtime})
    app = create_app(ModelEngine(settings), settings, runtimes=kinds)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False,
        log_level=settings.log_level.lower(), lifespan="on",
        timeout_graceful_shutdown=max(1, round(settings.stop_grace)), ws_max_size=settings.rpc_max_frame,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        date_header=False)  # rkio.api.response_headers writes it, without uvicorn's wake-ups
    server = QuietExitServer(config, app.state.readiness)
    server.run()
    return 0 if server.started else 1


class QuietExitServer(uvicorn.Server):
    """uvicorn's Server, quieter in two ways.

    A handled SIGTERM/SIGINT ends ``run`` normally instead of re-raising the signal after shutdown (which
    would make the exit status 143/130 instead of 0), and turns ``/ready`` false at once (requests in flight
    finish during the grace period; a router stops sending new ones). And it never wakes on its own:
    uvicorn's main loop ticks every 0.1 s to refresh the Date header and look for an exit request, and on
    a board each idle wake-up is CPU taken from the NPU's runtime, charged to every slow token (the
    board-pace issue). Here the Date header comes from ``rkio.api.response_headers`` (so uvicorn's is
    off) and an exit request, by signal or by setting ``should_exit``, wakes the loop at once.
    """

    def __init__(self, config: uvicorn.Config, readiness: Readiness) -> None:
        self._should_exit = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        super().__init__(config)
        self.readiness = readiness

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        loop, wake = self._loop, self._wake
        if value and loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)  # from a signal handler or another thread: the safe call

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        should_exit = await self.on_tick(0)  # the default headers (without Date: config.date_header off)
        while not should_exit:
            await self._wake.wait()
            self._wake.clear()
            should_exit = await self.on_tick(1)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.readiness.draining = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
