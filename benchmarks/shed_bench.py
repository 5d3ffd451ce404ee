"""How fast a full board says no: with its queue full (one generation running, ``--max-queue`` waiting), a
burst of further requests must each get 429 with ``Retry-After`` at once, so that a router in front of
several boards retries elsewhere instead of waiting. Reports the 429 latency (median, p99, max) per burst
size while the board keeps generating.

    .venv/bin/python benchmarks/shed_bench.py [--max-queue 4] [--bursts 1,50,200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import httpx
from http_bench import serving

BODY = {"model": "bench", "messages": [{"role": "user", "content": "x y [[n=2000]]"}]}  # 2000 x 5 ms = 10 s


async def refused(client: httpx.AsyncClient) -> tuple[int, float, str | None]:
    start = time.perf_counter()
    r = await client.post("/v1/chat/completions", json=BODY)
    return r.status_code, time.perf_counter() - start, r.headers.get("retry-after")


async def until(client: httpx.AsyncClient, field: str, value: int) -> None:
    """Poll the engine's status (no event to wait on from outside) until ``field`` reaches ``value``."""
    for _ in range(3000):
        if (await client.get("/rkio/status")).json()[field] >= value:
            return
        await asyncio.sleep(0.01)
    raise SystemExit(f"the board never reached {field} {value}")


async def run(url: str, max_queue: int, bursts: list[int]) -> None:
    limits = httpx.Limits(max_connections=max(bursts) + max_queue + 10)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        hogs = [asyncio.create_task(client.post("/v1/chat/completions", json=BODY))]
        await until(client, "running", 1)
        hogs += [asyncio.create_task(client.post("/v1/chat/completions", json=BODY))
                 for _ in range(max_queue)]
        await until(client, "queue_length", max_queue)
        for burst in bursts:
            results = await asyncio.gather(*(refused(client) for _ in range(burst)))
            seconds = sorted(s for _, s, _ in results)
            codes = {code for code, _, _ in results}
            after = {ra for _, _, ra in results}
            p99 = seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))]
            print(f"burst {burst:4d}: status {sorted(codes)}, Retry-After {sorted(a or '-' for a in after)}, "
                  f"429 in median {statistics.median(seconds) * 1000:6.1f} ms, p99 {p99 * 1000:6.1f} ms, "
                  f"max {seconds[-1] * 1000:6.1f} ms")
        for hog in hogs:
            hog.cancel()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-queue", type=int, default=4)
    parser.add_argument("--bursts", default="1,50,200")
    parser.add_argument("--log-level", default="warning",
                        help="info: the server logs each 429 with its server-side duration_ms")
    args = parser.parse_args()
    extra = ("--max-queue", str(args.max_queue), "--log-level", args.log_level)
    with serving(5000, 2000, extra) as url:
        asyncio.run(run(url, args.max_queue, [int(b) for b in args.bursts.split(",")]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
