"""Chaos soak: many concurrent streaming clients over several models of a real ``rkio serve`` on the
simulator, with segfaults, exits and abort-deaf hangs armed in single requests, abort-deaf slow prefills,
client hang-ups, SIGKILLed runners, a model that crashes on every request, one whose load fails and one that
does not fit.
Bounded by a request count and a duration; prints a summary and exits 1 when a pass criterion fails
(docs/reliability.md).

    .venv/bin/python tests/soak/soak.py [--profile short|long] [--seconds S] [--requests N] [--clients C]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

import httpx  # noqa: E402
import openai  # noqa: E402
from chaos import Chaos  # noqa: E402
from gateway import HEALTHY, Gateway  # noqa: E402
from traffic import Outcome, Plan, send  # noqa: E402
from verdict import Findings, Settled, Shutdown, report  # noqa: E402

import simkit  # noqa: E402
from rkio.engine.runner.service import ORPHAN_EXIT_S  # noqa: E402

# The server's own limits; a request's deadline is what they add up to, plus slack for a loaded machine.
SETTINGS = {"npu_lanes": "1", "max_queue": "64", "queue_timeout": "20s", "load_timeout": "20s",
            "first_token_timeout": "10s", "token_stall_timeout": "3s", "stop_grace": "3s", "abort_grace": "2"}
DEADLINE = 20 + 20 + 10 + 2 + 15.0
TOKEN_US = 3000


@dataclass(frozen=True)
class Profile:
    seconds: float
    requests: int
    clients: int
    kill_every: float


PROFILES = {"short": Profile(seconds=40, requests=300, clients=6, kill_every=7.0),
            "long": Profile(seconds=240, requests=4000, clients=12, kill_every=10.0)}


async def client_loop(chaos: Chaos, url: str, stop_at: float, remaining: list[int],
                      outcomes: list[Outcome], planned: list[Plan]) -> None:
    limits = httpx.Limits(max_connections=8)
    sdk = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=DEADLINE)
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(DEADLINE), limits=limits) as raw, sdk:
        while time.monotonic() < stop_at and remaining[0] > 0:
            remaining[0] -= 1
            plan = chaos.plan()
            planned.append(plan)
            outcome = await send(plan, raw, sdk)
            outcomes.append(outcome)
            if outcome.ending == "error" and plan.fault and not plan.fault.startswith("slow_prefill"):
                chaos.record_crash(plan.model, plan.fault.split(":")[0], outcome.ended)


async def warm_up(url: str) -> None:
    """One answer from each healthy model (loads and evictions happen here), so the baseline RSS is taken
    with the server's imports, runners and caches in place."""
    async with httpx.AsyncClient(base_url=url, timeout=DEADLINE) as client:
        for model in (*HEALTHY, *HEALTHY):
            body = {"model": model, "messages": [{"role": "user", "content": "warm up [[n=3]]"}]}
            reply = await client.post("/v1/chat/completions", json=body)
            if reply.status_code != 200:
                raise RuntimeError(f"warm-up of {model} failed: {reply.status_code} {reply.text}")


async def traffic(gateway: Gateway, profile: Profile, seed: int) -> tuple[Chaos, list[Outcome], list[Plan],
                                                                         int, int, Settled]:
    await warm_up(gateway.url)
    await asyncio.sleep(1)
    baseline = gateway.rss()
    chaos = Chaos(random.Random(seed), DEADLINE)
    stop = asyncio.Event()
    killer = asyncio.create_task(chaos.killer(gateway, profile.kill_every, stop))
    outcomes: list[Outcome] = []
    planned: list[Plan] = []
    stop_at = time.monotonic() + profile.seconds
    remaining = [profile.requests]
    await asyncio.gather(*(client_loop(chaos, gateway.url, stop_at, remaining, outcomes, planned)
                           for _ in range(profile.clients)))
    stop.set()
    await killer
    await asyncio.sleep(3)  # finished requests' buffers released, aborted runs reaped
    async with httpx.AsyncClient() as client:
        status = await gateway.status(client)
    runners = {m["pid"] for m in status["loaded"]}
    foreign = sorted({r["pid"] for r in simkit.read_state(gateway.state)["reservations"]} - runners)
    inside = sorted({j["pid"] for j in simkit.read_npu_jobs(gateway.state)["active"]})
    settled = Settled(status["queue_length"], status["running"], sum(m["leases"] for m in status["loaded"]),
                      foreign, inside)
    return chaos, outcomes, planned, baseline, gateway.rss(), settled


def stop_gateway(gateway: Gateway, sig: signal.Signals) -> Shutdown:
    runners = len(gateway.runners())
    start = time.monotonic()
    status = gateway.terminate(sig, timeout=30)
    procs, reservations, jobs = gateway.leftovers(wait=ORPHAN_EXIT_S + 10)
    return Shutdown(sig.name, runners, status, time.monotonic() - start, procs, len(reservations), len(jobs))


async def busy_then_killed(home: Path) -> Shutdown:
    """A fresh gateway whose runner is stuck in an abort-deaf hang, another request queued, then SIGKILL."""
    gateway = Gateway.start(home, TOKEN_US, dict(SETTINGS))
    try:
        await warm_up(gateway.url)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            bodies = [{"model": model, "messages": [{"role": "user", "content": f"stuck {fault}"}]}
                      for model, fault in ((HEALTHY[-1], "[[fault=hang_at_token:2]]"),
                                           (HEALTHY[-2], "[[fault=slow_prefill:5000]]"))]
            tasks = [asyncio.create_task(client.post("/v1/chat/completions", json=b)) for b in bodies]
            await asyncio.sleep(1.5)
            gateway.runners()
            shutdown = stop_gateway(gateway, signal.SIGKILL)
            await asyncio.gather(*tasks, return_exceptions=True)  # their connections die with the gateway
        return shutdown
    finally:
        gateway.reap()


async def terminated_in_flight(gateway: Gateway, first_rid: int) -> tuple[Shutdown, list[Outcome]]:
    """SIGTERM while one request is stuck in an abort-deaf hang and others wait: each must still end in
    the protocol's shape (the server's "shutting down" error), and the hung runner must not outlive it."""
    plans = [Plan(first_rid + i, model, api, 8, DEADLINE, fault)
             for i, (model, api, fault) in enumerate([(HEALTHY[0], "openai-sse", "hang_at_token:2"),
                                                     (HEALTHY[1], "ollama", "slow_prefill:1500"),
                                                     (HEALTHY[0], "openai-sdk", None)])]
    sdk = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0, timeout=DEADLINE)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=DEADLINE) as raw, sdk:
        sending = [asyncio.create_task(send(p, raw, sdk)) for p in plans]
        await asyncio.sleep(1.5)
        shutdown = await asyncio.to_thread(stop_gateway, gateway, signal.SIGTERM)
        return shutdown, list(await asyncio.gather(*sending))


async def soak(profile: Profile, seed: int, home: Path) -> Findings:
    gateway = Gateway.start(home, TOKEN_US, dict(SETTINGS))
    try:
        chaos, outcomes, planned, baseline, end_rss, settled = await traffic(gateway, profile, seed)
        shutdown, in_flight = await terminated_in_flight(gateway, chaos.next_rid + 1)
        shutdowns = [shutdown]
        planned += [o.plan for o in in_flight]
        outcomes += in_flight
    finally:
        gateway.reap()
    shutdowns.append(await busy_then_killed(home))
    jobs = simkit.read_npu_jobs(gateway.state)
    state = simkit.read_state(gateway.state)
    log = (home / "server.log").read_text(errors="replace")
    return Findings(len(planned), outcomes, chaos.events, state["overcommits"], jobs["overlaps"],
                    jobs["overlap_log"], jobs["jobs"], baseline, end_rss, settled, shutdowns, in_flight,
                    log.count("Traceback (most recent call last)"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--clients", type=int)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", type=Path, help="keep the server home (models, logs, sim state) here")
    args = parser.parse_args()
    base = PROFILES[args.profile]
    profile = Profile(args.seconds or base.seconds, args.requests or base.requests,
                      args.clients or base.clients, base.kill_every)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rkio-soak-") as tmp:
        home = args.keep or Path(tmp)
        findings = asyncio.run(soak(profile, args.seed, home))
        passed, text = report(findings)
        print(text)
        print(f"({time.monotonic() - started:.0f} s wall, profile {args.profile}, seed {args.seed}, "
              f"{profile.clients} clients)")
        if not passed:
            print("--- server log tail ---\n" + "\n".join(
                (home / "server.log").read_text(errors="replace").splitlines()[-25:]))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
