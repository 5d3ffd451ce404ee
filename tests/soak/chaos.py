"""The soak's faults: which requests arm a simulator fault or hang up early, and the killer that SIGKILLs
random runners. A model is quarantined after three crashes in ten minutes (rkio.engine.lifecycle), so every
healthy model gets a budget of crash-class events (runner kills, segfaults, exits, hangs that end in a kill)
that keeps it serving; the model built to crash on every request is left to reach its quarantine."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from dataclasses import dataclass, field

import httpx
from gateway import CRASHY, HEALTHY, HUGE, INIT_FAIL, Gateway
from traffic import Api, Plan

CRASH_BUDGET = 2  # QUARANTINE_CRASHES - 1
SLOW_PREFILL = "slow_prefill:1500"  # a prefill that ignores abort for 1.5 s
APIS: tuple[Api, ...] = ("openai-sdk", "openai-sse", "ollama")


@dataclass
class CrashEvent:
    time: float  # time.monotonic()
    model: str
    kind: str  # kill | segv_at_token | exit_at_token | hang_at_token


@dataclass
class Chaos:
    """Shared by all clients: the crash budgets and the record of what was done."""

    rng: random.Random
    deadline: float  # per request, seconds
    budget: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HEALTHY, CRASH_BUDGET))
    events: list[CrashEvent] = field(default_factory=list)
    next_rid: int = 0

    def take(self, model: str) -> bool:
        if self.budget.get(model, 0) <= 0:
            return False
        self.budget[model] -= 1
        return True

    def record_crash(self, model: str, kind: str, when: float) -> None:
        self.events.append(CrashEvent(when, model, kind))

    def plan(self) -> Plan:
        """The next request: mostly healthy models, some armed with a fault, some hung up on."""
        rng = self.rng
        self.next_rid += 1
        roll = rng.random()
        model = (CRASHY if roll < 0.05 else INIT_FAIL if roll < 0.09 else HUGE if roll < 0.12
                 else "no-such-model" if roll < 0.14 else rng.choice(HEALTHY))
        tokens = rng.randint(4, 24)
        fault: str | None = None
        disconnect_after: int | None = None
        hangup_at: float | None = None
        if model in HEALTHY:
            roll = rng.random()
            if roll < 0.05 and self.take(model):
                kind = rng.choice(("segv_at_token", "exit_at_token", "hang_at_token"))
                fault = f"{kind}:{rng.randint(1, tokens - 1)}"
            elif roll < 0.10:
                fault = SLOW_PREFILL
                if rng.random() < 0.6:
                    hangup_at = rng.uniform(0.2, 1.0)  # the client leaves during the prefill
            elif roll < 0.22:
                disconnect_after = rng.randint(0, tokens // 2)
        return Plan(self.next_rid, model, rng.choice(APIS), tokens, self.deadline, fault, disconnect_after,
                    hangup_at)

    async def killer(self, gateway: Gateway, every: float, stop: asyncio.Event) -> None:
        """SIGKILL a runner of a healthy model every ``every`` seconds, preferring one that is generating."""
        async with httpx.AsyncClient() as client:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=every)
                    return
                except TimeoutError:
                    pass
                try:
                    loaded = (await gateway.status(client))["loaded"]
                except (httpx.HTTPError, ValueError, KeyError):
                    continue
                gateway.runners()
                targets = [m for m in loaded
                           if m["name"] in HEALTHY and m["pid"] and self.budget[m["name"]] > 0]
                busy = [m for m in targets if m["state"] == "busy"]
                if not targets:
                    continue
                victim = self.rng.choice(busy or targets)
                self.take(victim["name"])
                try:
                    os.kill(victim["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.events.append(CrashEvent(time.monotonic(), victim["name"], "kill"))
