"""The user's crash scenario replayed through rkio's engine on the simulator.

``python -m rkio.probe.engine_scenario [--flavour 1.2.3] [--budget 16GiB] [--overcommit oom]``

A large model is asked for, then a smaller one, then the large one again, with the simulator set to
OOM-kill (or fail, segfault, corrupt) on any overcommit of RAM or of an IOMMU domain. The naive sequence
(both at base_domain_id 0) is what ``rkio probe --simulate`` shows failing; here the engine's planner
chooses the domains and evicts within the budget. The table shows, per step, what the engine decided and
whether the simulator saw an overcommit or killed anything. This is evidence about rkio's code on the
simulator, not about the chip (see tmp/researches/memory-analysis.md §7).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import tempfile
from pathlib import Path

from rkio.config import Settings
from rkio.engine.engine import ModelEngine
from rkio.engine.runner import RunnerProcess
from rkio.engine.types import ChatMessage, Done, GenerationRequest
from rkio.errors import RkioError
from rkio.probe.simulated import FLAVOURS, OVERCOMMIT_MODES, sim_environment, sim_library, write_sim_model
from rkio.units import GiB, MiB, parse_size

MODELS = (("large", 3 * GiB), ("small", 1536 * MiB))
STEPS = ("large", "small", "large")


def sim_counters(state: Path) -> tuple[int, int]:
    """(overcommits, OOM kills) recorded in the simulator's state file."""
    try:
        lines = state.read_text().splitlines()
    except OSError:
        return 0, 0
    overcommits = next((int(line.split()[1]) for line in lines if line.startswith("overcommits ")), 0)
    return overcommits, sum(1 for line in lines if line.startswith("oom "))


async def replay(flavour: str, budget: int, overcommit: str, root: Path) -> list[list[str]]:
    models = root / "models"
    for name, size in MODELS:
        write_sim_model(models / name / f"{name}.rkllm", size)
    state = root / "sim-state"
    env = sim_environment(sim_library(flavour), state, 16 * GiB, overcommit, base={})
    settings = Settings(models_dir=models, state_dir=root / "rkio-state", memory_budget=budget)  # no RKIO_*
    engine = ModelEngine(settings, runner_factory=functools.partial(RunnerProcess.start, env=env))
    await engine.start()
    rows: list[list[str]] = []
    try:
        for step, model in enumerate(STEPS, 1):
            request = GenerationRequest(model=model, messages=(ChatMessage("user", "hello there"),),
                                        max_tokens=4)
            try:
                outcome = "no reply"
                async for event in engine.generate(request):
                    if isinstance(event, Done):
                        outcome = f"ok ({event.finish_reason})"
            except RkioError as exc:
                outcome = f"{type(exc).__name__}: {exc.message[:60]}"
            status = engine.status()
            resident = "; ".join(f"{m.name} domains {list(m.domains)} {m.bytes // MiB} MiB"
                                 for m in status.loaded) or "-"
            overcommits, kills = sim_counters(state)
            rows.append([str(step), model, outcome, resident, str(status.counters.get("evictions", 0)),
                         str(overcommits), str(kills)])
    finally:
        await engine.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flavour", choices=FLAVOURS, default="1.2.3")
    parser.add_argument("--budget", default="16GiB", help="rkio's memory budget (default 16GiB)")
    parser.add_argument("--overcommit", choices=OVERCOMMIT_MODES, default="oom")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rkio-engine-scenario-") as tmp:
        rows = asyncio.run(replay(args.flavour, parse_size(args.budget), args.overcommit, Path(tmp)))
    print(f"flavour {args.flavour}, budget {args.budget}, simulator overcommit mode {args.overcommit}\n")
    header = ["step", "request", "outcome", "resident after (planner's figure)", "evictions",
              "sim overcommits", "sim OOM kills"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
