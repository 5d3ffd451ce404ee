"""JSON-RPC benchmark on the simulator: call round trips per transport, and one streamed rkllm.run.

Starts ``rkio serve`` (as ``http_bench.py`` does, token cost 0) with the Unix socket and TCP on, then
measures what the IO API adds: round trips of ``rkllm.get_constants`` (no engine work) over the Unix socket,
TCP and ``POST /rpc``, and one ``rkllm.run`` with ``stream: true`` over the Unix socket (tokens/s, time to the
first notification, server CPU per token).

    .venv/bin/python benchmarks/rpc_bench.py [--calls 2000] [--tokens 4000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from http_bench import cpu_seconds, process_tree, start_server

CONSTANTS = b'{"jsonrpc":"2.0","id":1,"method":"rkllm.get_constants"}\n'


class Lines:
    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def send(self, message: dict[str, object]) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def receive(self) -> dict[str, object]:
        while b"\n" not in self.buffer:
            self.buffer += self.sock.recv(1 << 16)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return dict(json.loads(line))


def round_trips(send: object, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        send()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def line_caller(conn: Lines) -> object:
    def call() -> None:
        conn.sock.sendall(CONSTANTS)
        conn.receive()

    return call


def report(name: str, times: list[float]) -> None:
    median, p90 = statistics.median(times), sorted(times)[int(len(times) * 0.9)]
    rate = len(times) / sum(times)
    print(f"{name:5s}: {rate:7.0f} calls/s, median {median * 1e6:6.0f} us, p90 {p90 * 1e6:6.0f} us")


def stream_run(conn: Lines, handle: int, tokens: int) -> tuple[float, float, int]:
    """(time to first notification, total seconds, tokens) of one pushed rkllm.run."""
    start = time.perf_counter()
    conn.send(
        {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "rkllm.run",
            "params": {"handle_id": handle, "prompt": f"bench words here [[n={tokens}]]", "stream": True},
        }
    )
    first = None
    while True:
        message = conn.receive()
        if first is None and message.get("method"):
            first = time.perf_counter() - start
        if message.get("id") == 7:
            result = message["result"]
            assert isinstance(result, dict)
            return first or 0.0, time.perf_counter() - start, len(result["token_ids"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        unix = str(Path(tmp) / "rpc.sock")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            tcp = s.getsockname()[1]
        flags = ("--rpc-unix", unix, "--rpc-tcp", f"127.0.0.1:{tcp}")
        proc, url = start_server(Path(tmp), 0, args.tokens, flags)
        try:
            unix_sock = socket.socket(socket.AF_UNIX)
            unix_sock.connect(unix)
            conn = Lines(unix_sock)
            tcp_conn = Lines(socket.create_connection(("127.0.0.1", tcp)))
            http = httpx.Client(base_url=url)
            for name, call in (
                ("unix", line_caller(conn)),
                ("tcp", line_caller(tcp_conn)),
                ("http", lambda: http.post("/rpc", content=CONSTANTS).json()),
            ):
                round_trips(call, 100)  # warm up
                report(name, round_trips(call, args.calls))
            conn.send({"jsonrpc": "2.0", "id": 1, "method": "rkllm.init", "params": {"model_path": "bench"}})
            handle = conn.receive()["result"]["handle_id"]  # type: ignore[index]
            stream_run(conn, handle, 8)
            pids = process_tree(proc.pid)
            cpu0 = sum(cpu_seconds(p) for p in pids)
            results = [stream_run(conn, handle, args.tokens) for _ in range(args.runs)]
            cpu = sum(cpu_seconds(p) for p in pids) - cpu0
            best = min(results, key=lambda r: r[1])
            print(
                f"push stream (unix): {best[2] / best[1]:9.0f} tokens/s "
                f"(best of {args.runs}, {best[2]} tokens), "
                f"first notification {min(r[0] for r in results) * 1000:.1f} ms, "
                f"server CPU {cpu / sum(r[2] for r in results) * 1e6:.1f} us/token (gateway + runner)"
            )
        finally:
            proc.terminate()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
