"""Helpers for engine tests on the simulator: model files, an engine per test, collecting replies, and
the cross-checks between what the engine believes and what the simulator's state file records.

(A uniquely named module rather than conftest imports: conftest module names clash across test dirs.)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import simkit
from rkio.config import Settings
from rkio.engine.engine import ModelEngine
from rkio.engine.types import Done, EngineStatus, GenerationRequest, Loading, Queued, TokenChunk
from rkio.errors import RkioError

EngineFactory = Callable[..., Awaitable[ModelEngine]]
SETTLE_S = 20.0  # bound on waiting for the engine to reach a state (the machine is shared and slow)


class SimModels:
    """A models directory of sparse simulated model files (``<root>/<name>/<name>.rkllm``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, name: str, size: int, toml: str = "", **header: object) -> Path:
        path: Path = simkit.make_model(self.root / name / f"{name}.rkllm", size, **header)
        if toml:
            (self.root / name / "model.toml").write_text(toml)
        return path


async def start_engine(models_dir: Path, state_dir: Path, sim: simkit.SimEnv,
                       **overrides: Any) -> ModelEngine:
    """A started ModelEngine with the default runner factory (runners inherit the sim's environment).

    ``memory_budget`` defaults to the simulator's RAM, so the engine's budget and the sim agree.
    """
    values: dict[str, Any] = {"models_dir": models_dir, "state_dir": state_dir,
                              "memory_budget": sim.ram_bytes, "load_timeout": 30.0,
                              "first_token_timeout": 30.0, "token_stall_timeout": 30.0,
                              "abort_grace": 2.0, "stop_grace": 2.0}
    values.update(overrides)
    engine = ModelEngine(Settings(**values))
    await engine.start()
    return engine


@dataclass
class Reply:
    """One generate() call as the client saw it: the events in order, then Done or an error."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    chunks: int = 0
    done: Done | None = None
    error: RkioError | None = None
    queued: list[int] = field(default_factory=list)
    loading: int = 0
    first_token_at: float | None = None


def request(model: str, prompt: str, **kw: Any) -> GenerationRequest:
    return GenerationRequest(model=model, prompt=prompt, **kw)


async def collect(engine: ModelEngine, model: str, prompt: str, **kw: Any) -> Reply:
    """Run one generation to its end; a Reply ends exactly once (Done xor error, nothing after it)."""
    reply = Reply()
    loop = asyncio.get_running_loop()
    try:
        async for event in engine.generate(request(model, prompt, **kw)):
            assert reply.done is None, f"{event!r} after Done"
            if isinstance(event, TokenChunk):
                if reply.first_token_at is None:
                    reply.first_token_at = loop.time()
                reply.text += event.text
                reply.token_ids.extend(event.token_ids)
                reply.chunks += 1
            elif isinstance(event, Done):
                reply.done = event
            elif isinstance(event, Queued):
                reply.queued.append(event.position)
            elif isinstance(event, Loading):
                reply.loading += 1
            else:
                raise AssertionError(f"unexpected event {event!r}")
    except RkioError as exc:
        reply.error = exc
    assert (reply.done is None) != (reply.error is None), f"{model}: {reply!r} did not end exactly once"
    return reply


def oracle(prompt: str, n: int) -> tuple[str, list[int]]:
    """The simulator's reply to ``prompt`` cut at ``n`` tokens: its text and token ids."""
    tokens = simkit.expected_reply(prompt, n)
    return "".join(tokens), [simkit.token_id(t) for t in tokens]


def assert_reply(reply: Reply, prompt: str, n: int) -> None:
    """``reply`` is exactly the simulator's ``n``-token answer to ``prompt``: nothing lost, added or mixed."""
    assert reply.error is None, f"{prompt!r}: {reply.error!r}"
    text, ids = oracle(prompt, n)
    assert reply.text == text, f"{prompt!r}: got {reply.text!r}, want {text!r}"
    assert reply.token_ids == ids
    assert reply.done is not None and reply.done.usage.completion_tokens == n


async def settle(engine: ModelEngine, predicate: Callable[[EngineStatus], bool],
                 within: float = SETTLE_S) -> None:
    """Wait (event-driven, through the supervisor) until ``predicate(engine.status())`` holds."""
    sup = engine._sup
    assert sup is not None
    await asyncio.wait_for(sup.until(lambda: predicate(engine.status())), within)


def quiet(status: EngineStatus) -> bool:
    """Nothing loading, stopping or running: every loaded model is idle."""
    return status.running == 0 and all(m.state == "idle" for m in status.loaded)


def check_memory_truth(engine: ModelEngine, sim: simkit.SimEnv, overcommits: int = 0) -> dict[str, Any]:
    """The engine's view matches the simulator's: the same runners hold NPU memory, none more than the
    engine accounts for, within the budget, no domain overfilled, and ``overcommits`` overcommits (0:
    and no OOM kill) recorded. Call when quiet."""
    status = engine.status()
    state: dict[str, Any] = sim.read_state()
    assert state["overcommits"] == overcommits, state["overcommit_log"]
    if overcommits == 0:
        assert state["oom_kills"] == [], state["oom_kills"]
    assert status.used_bytes <= status.budget_bytes
    assert state["used_bytes"] <= status.budget_bytes
    assert all(used <= simkit.DOMAIN_BYTES for used in state["domain_used"]), state["domain_used"]
    held = {r["pid"]: r for r in state["reservations"]}
    loaded = {m.pid: m for m in status.loaded if m.pid is not None}
    assert set(held) == set(loaded), f"sim holds {sorted(held)}, engine has {sorted(loaded)}"
    for pid, model in loaded.items():
        assert model.bytes >= held[pid]["bytes"], f"{model.name} accounted below what it holds"
        assert held[pid]["base_domain"] == model.domains[0]
    return state


def child_pids() -> set[int]:
    """Processes (including unreaped zombies) whose parent is this test process."""
    me = os.getpid()
    out: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(raw[raw.rindex(")") + 2:].split()[1]) == me:
            out.add(int(entry))
    return out


def configure_sim(sim: simkit.SimEnv, monkeypatch: Any, *, ram: int | None = None,
                  overcommit: str | None = None, token_us: int | None = None,
                  npu_memory: str | None = None) -> None:
    """Change the simulator's settings for the runners started from now on (they inherit os.environ)."""
    if npu_memory is not None:
        sim.npu_memory = npu_memory
    if ram is not None:
        sim.ram_bytes = ram
    if overcommit is not None:
        sim.overcommit = overcommit
    if token_us is not None:
        sim.token_us = token_us
    for key, value in sim.env({}).items():
        monkeypatch.setenv(key, value)
