"""What this machine charges for passing one token a minute fraction of a second apart: the floor under
``board_pace_bench.py``.

    .venv/bin/python benchmarks/wakeup_floor_bench.py [--pace-ms 60] [--tokens 60]

A producer sleeps ``--pace-ms`` and hands 40 bytes on; a consumer sends them to a socket (a stand-in
for the client connection). Both as two threads of one process (an in-process server: the runtime's
callback thread and the HTTP thread) and as two processes joined by a pipe (rkio: a runner and the
gateway). CPU of every thread from /proc/<pid>/task/*/schedstat. No Python beyond the loop itself, so
what is measured is the wake-ups, the syscalls and the cold caches and TLB they run with.

Last, the gateway's part alone on the event loop it runs on (uvloop when installed, as ``rkio serve``
uses): the pipe read in a protocol callback that writes an HTTP-chunk-sized write to a TCP connection on
loopback, nothing else. Only that process's CPU is counted: it is the floor under the gateway's figure
in ``board_pace_bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import queue
import socket
import statistics
import threading
import time

from board_pace_bench import cpu_ns

PAYLOAD = b"x" * 40


def sink() -> socket.socket:
    """A socket whose peer, a forked process, reads and drops everything."""
    ours, theirs = socket.socketpair()
    if os.fork() == 0:
        ours.close()
        while theirs.recv(1 << 16):
            pass
        os._exit(0)
    theirs.close()
    return ours


def threads(pace: float, tokens: int) -> float:
    """µs of CPU per token, producer and consumer threads of this process together."""
    out, handoff = sink(), queue.Queue[bytes | None]()

    def produce() -> None:
        for _ in range(tokens + 1):
            time.sleep(pace)
            handoff.put(PAYLOAD)
        handoff.put(None)

    threading.Thread(target=produce).start()
    out.send(handoff.get() or b"")  # the first one warms up
    before = cpu_ns(os.getpid())
    while (item := handoff.get()) is not None:
        out.send(item)
    used = cpu_ns(os.getpid()) - before
    out.close()
    return used / 1000 / tokens


def processes(pace: float, tokens: int) -> float:
    """µs of CPU per token, producer process and relaying process together."""
    out = sink()
    read_end, write_end = os.pipe()
    producer = os.fork()
    if producer == 0:
        os.close(read_end)
        for _ in range(tokens + 1):
            time.sleep(pace)
            os.write(write_end, PAYLOAD)
        time.sleep(0.5)  # stay alive until the relay has read the producer's CPU
        os._exit(0)
    os.close(write_end)
    out.send(os.read(read_end, 100))
    before = cpu_ns(os.getpid()) + cpu_ns(producer)
    for _ in range(tokens):
        out.send(os.read(read_end, 100))
    used = cpu_ns(os.getpid()) + cpu_ns(producer) - before
    os.waitpid(producer, 0)
    os.close(read_end)
    out.close()
    return used / 1000 / tokens


def event_loop_relay(pace: float, tokens: int) -> float:
    """µs of CPU per token of a process that relays each pipe read to a TCP client from its event loop."""
    listener = socket.create_server(("127.0.0.1", 0))
    read_end, write_end = os.pipe()
    relay = os.fork()
    if relay == 0:
        os.close(write_end)
        if importlib.util.find_spec("uvloop"):
            import uvloop

            uvloop.install()
        asyncio.run(_relay(listener, read_end))
        os._exit(0)
    os.close(read_end)
    client = socket.create_connection(listener.getsockname())
    chunk = len(PAYLOAD) * 3  # an SSE event of one token is ~3x the runner's frame

    def produce(n: int) -> None:
        for _ in range(n):
            time.sleep(pace)
            os.write(write_end, PAYLOAD)
            client.recv(chunk)

    produce(1)  # the first one warms up
    before = cpu_ns(relay)
    produce(tokens)
    used = cpu_ns(relay) - before
    os.close(write_end)
    os.waitpid(relay, 0)
    client.close()
    listener.close()
    return used / 1000 / tokens


async def _relay(listener: socket.socket, read_end: int) -> None:
    loop = asyncio.get_running_loop()
    conn, _ = await loop.sock_accept(listener)
    out, _ = await loop.connect_accepted_socket(asyncio.Protocol, sock=conn)
    ended = loop.create_future()
    body = b"x" * (len(PAYLOAD) * 3 - 7)

    class Relay(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            out.write(b"%x\r\n" % len(body) + body + b"\r\n")

        def connection_lost(self, exc: Exception | None) -> None:
            ended.set_result(None)

    await loop.connect_read_pipe(Relay, os.fdopen(read_end, "rb", buffering=0))
    await ended


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pace-ms", type=float, default=60.0)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    pace = args.pace_ms / 1000
    one, two, relay = [], [], []
    for _ in range(args.runs):
        one.append(threads(pace, args.tokens))
        two.append(processes(pace, args.tokens))
        relay.append(event_loop_relay(pace, args.tokens))
    print(f"wake-up floor at {args.pace_ms:g} ms per token ({args.runs} runs of {args.tokens} tokens; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
    print(f"  two threads, one process:   median {statistics.median(one):4.0f} µs CPU per token "
          f"({', '.join(f'{x:.0f}' for x in one)})")
    print(f"  two processes and a pipe:   median {statistics.median(two):4.0f} µs CPU per token "
          f"({', '.join(f'{x:.0f}' for x in two)})")
    label = f"the gateway alone, {'uvloop' if importlib.util.find_spec('uvloop') else 'asyncio'}:"
    print(f"  {label:<28}median {statistics.median(relay):4.0f} µs CPU per token "
          f"({', '.join(f'{x:.0f}' for x in relay)}): pipe read -> TCP write, no rkio code")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
