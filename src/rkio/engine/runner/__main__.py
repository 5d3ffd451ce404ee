"""Entry point of a runner process: ``python -m rkio.engine.runner --fd N`` (started by RunnerProcess)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import socket
import sys

from rkio.engine.runner.backends import create_runtime
from rkio.engine.runner.service import RunnerService


def _raise_fd_limit() -> None:
    # every NPU buffer is a dma-buf fd; big models exhaust the default 1024 (rkllm issues #17, #62)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rkio.engine.runner")
    parser.add_argument("--fd", type=int, required=True, help="socket the gateway sends commands on")
    parser.add_argument("--out-fd", type=int, required=True, help="pipe for frames to the gateway")
    parser.add_argument("--relay-fd", type=int, help="socket the gateway lends client sockets on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    _raise_fd_limit()
    sock = socket.socket(fileno=args.fd)
    relay = socket.socket(fileno=args.relay_fd) if args.relay_fd is not None else None
    return RunnerService(sock, args.out_fd, create_runtime, relay_sock=relay).serve()


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # native runtime threads must not keep a finished runner alive
    os._exit(code)
