"""Many concurrent streaming clients against one model on the simulator: every reply must be exactly its own
(the sim echoes the prompt's words). The server's CPU per request is the figure to watch: with hundreds of
streams the client (httpx, in one Python process on the same cores) needs far more CPU than the server.

    .venv/bin/python benchmarks/concurrency_bench.py [--clients 100,300,1000] [--tokens 20]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
from http_bench import cpu_seconds, process_tree, start_server


async def one(client: httpx.AsyncClient, i: int, tokens: int) -> str:
    body = {"model": "bench", "stream": True,
            "messages": [{"role": "user", "content": f"w{i} x{i} [[n={tokens}]]"}]}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            text = ""
            async for line in r.aiter_lines():
                if line.startswith("data: {") and '"content":"' in line:
                    text += json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
            if r.status_code != 200:
                return str(r.status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    words = text.split()
    return "exact" if len(words) == tokens and set(words) <= {f"w{i}", f"x{i}"} else "WRONG"


async def burst(url: str, clients: int, tokens: int) -> tuple[collections.Counter[str], float]:
    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(one(client, i, tokens) for i in range(clients)))
        return collections.Counter(results), time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="100,300,1000")
    parser.add_argument("--tokens", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp), 0, args.tokens, extra=("--max-queue", "5000"))
        try:
            asyncio.run(burst(url, 1, args.tokens))  # load the model
            pids = process_tree(proc.pid)
            for clients in (int(c) for c in args.clients.split(",")):
                cpu = sum(cpu_seconds(p) for p in pids)
                counts, seconds = asyncio.run(burst(url, clients, args.tokens))
                cpu = sum(cpu_seconds(p) for p in pids) - cpu
                print(f"{clients:5d} clients x {args.tokens} tokens: {seconds:6.1f} s wall, "
                      f"server {cpu / clients * 1000:5.2f} ms CPU per request, replies {dict(counts)}")
        finally:
            proc.terminate()
            proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
