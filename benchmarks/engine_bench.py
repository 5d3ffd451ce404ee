"""End-to-end cost of one stream through ModelEngine and a real runner process on the simulator.

    .venv/bin/python benchmarks/engine_bench.py [--tokens 200000] [--flavour 1.2.3] [--ttft-runs 50]

The simulator produces tokens at zero cost, so what is measured is rkio's own work: the runtime callback
and frames in the runner, the socket, RunnerProcess, the engine's session and watchdog in the gateway.

* tokens/s: one long generation on a loaded model, from ``engine.generate()`` to ``Done``.
* CPU µs/token: getrusage(RUSAGE_SELF) + getrusage(RUSAGE_CHILDREN) deltas. A child's CPU shows in
  RUSAGE_CHILDREN only once it is reaped, so each measured generation runs in a runner of its own
  (keep_alive=0: load, generate, unload, reap), and the same cycle with a one-token reply is subtracted
  (interpreter start, load, stop). The gateway/runner split comes from RUSAGE_SELF alone.
* added TTFT: median time from ``engine.generate()`` to the first token for a one-token chat request on a
  loaded model, minus the bare simulator's median TTFT driven in this process (no runner, no engine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import simkit
from rkio.config import Settings
from rkio.engine.engine import ModelEngine
from rkio.engine.types import Done, GenerationRequest, TokenChunk
from rkio.runtime.base import GenerateParams, LoadParams
from rkio.units import GiB

TARGETS = {"tokens/s": 60_000.0, "CPU µs/token": 15.0, "added TTFT ms": 1.5}


def cpu_now() -> tuple[float, float]:
    """(this process, reaped children) CPU seconds."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


async def run(engine: ModelEngine, prompt: str, **kw: object) -> tuple[float | None, int, int, float]:
    """(TTFT s, tokens, chunks, wall s) of one generation."""
    started = time.perf_counter()
    first = None
    tokens = chunks = 0
    done = None
    async for event in engine.generate(GenerationRequest(model="bench", prompt=prompt, **kw)):  # type: ignore[arg-type]
        if type(event) is TokenChunk:
            if first is None:
                first = time.perf_counter() - started
            tokens += len(event.token_ids)
            chunks += 1
        elif type(event) is Done:
            done = event
    assert done is not None
    return first, tokens, chunks, time.perf_counter() - started


async def runner_cycle(engine: ModelEngine, n: int) -> tuple[float, float, float, int, int]:
    """Load, generate ``n`` tokens, unload and reap: (gateway CPU s, runner CPU s, wall s, tokens, chunks)."""
    sup = engine._sup
    assert sup is not None
    self0, kids0 = cpu_now()
    _, tokens, chunks, wall = await run(engine, f"[[n={n}]] a b c d", keep_alive=0)
    await asyncio.wait_for(sup.until(lambda: not engine.status().loaded), 30)
    self1, kids1 = cpu_now()
    assert tokens == n, (tokens, n)
    return self1 - self0, kids1 - kids0, wall, tokens, chunks


def bare_ttft(runs: int, directory: Path) -> float:
    """Median TTFT of the simulator driven directly in this process (the floor rkio adds to)."""
    from rkio.runtime.rkllm import RkllmRuntime  # after the environment points at the simulator

    runtime = RkllmRuntime()
    runtime.load(LoadParams(model_path=str(simkit.make_model(directory / "bare.rkllm", 64 << 20))))
    try:
        seen: list[float] = []

        def first_token(_token: object) -> bool:
            seen.append(time.perf_counter())
            return True

        firsts = []
        for _ in range(runs):
            seen.clear()
            started = time.perf_counter()
            runtime.generate(GenerateParams(prompt="[[n=1]] hi"), first_token)
            firsts.append(seen[0] - started)
    finally:
        runtime.destroy()
    return statistics.median(firsts)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--flavour", default="1.2.3")
    parser.add_argument("--ttft-runs", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rkio-engine-bench-") as tmp:
        root = Path(tmp)
        context = args.tokens + 1024  # the sim ends a reply at max_context_len
        simkit.make_model(root / "models" / "bench" / "bench.rkllm", 64 << 20, max_context_limit=context,
                          kv_bytes_per_token=64)
        (root / "models" / "bench" / "model.toml").write_text(
            f"max_context_len = {context}\nmax_new_tokens = {context}\n")
        os.environ.update(simkit.SimEnv.fresh(root, token_us=0, prefill_us=0, init_ms=0).env({}))
        os.environ["RKIO_RKLLM_LIB"] = str(simkit.sim_library(args.flavour))
        os.environ["RKIO_RKLLM_ABI"] = args.flavour
        floor = bare_ttft(args.ttft_runs, root)
        engine = ModelEngine(Settings(models_dir=root / "models", state_dir=root / "state",
                                      memory_budget=64 * GiB))
        await engine.start()
        try:
            base = await runner_cycle(engine, 1)  # interpreter start, load, stop: subtracted below
            rows = []
            for _ in range(args.repeat):
                gateway, runner, wall, tokens, chunks = await runner_cycle(engine, args.tokens)
                n = tokens - 1
                rows.append((n / (wall - base[2]), 1e6 * (gateway - base[0] + runner - base[1]) / n,
                             1e6 * (gateway - base[0]) / n, 1e6 * (runner - base[1]) / n, tokens / chunks))
            await run(engine, "[[n=1000]] warm up", keep_alive=-1)  # load and keep it
            ttfts = []
            for _ in range(args.ttft_runs):
                first, *_ = await run(engine, "[[n=1]] hi")
                assert first is not None
                ttfts.append(first)
        finally:
            await engine.stop()
    rate = statistics.median(r[0] for r in rows)
    cpu = statistics.median(r[1] for r in rows)
    ttft = statistics.median(ttfts)
    print(f"ModelEngine + runner on the {args.flavour} simulator, {args.tokens:,} tokens x {args.repeat}, "
          f"zero cost per token; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs\n")
    print(f"{'run':>4} {'tokens/s':>10} {'CPU µs/tok':>11} {'gateway':>8} {'runner':>8} {'tok/chunk':>10}")
    for i, (r, c, g, w, per) in enumerate(rows, 1):
        print(f"{i:>4} {r:>10,.0f} {c:>11.2f} {g:>8.2f} {w:>8.2f} {per:>10.1f}")
    print()
    measured = {"tokens/s": rate, "CPU µs/token": cpu, "added TTFT ms": 1e3 * (ttft - floor)}
    print(f"{'metric':<16} {'measured':>10} {'target':>10}  ok")
    for name, value in measured.items():
        target = TARGETS[name]
        ok = value >= target if name == "tokens/s" else value <= target
        print(f"{name:<16} {value:>10,.2f} {target:>10,.2f}  {'yes' if ok else 'NO'}")
    p90 = sorted(ttfts)[int(0.9 * len(ttfts))]
    print(f"\nTTFT through the engine: median {1e3 * ttft:.3f} ms, p90 {1e3 * p90:.3f} ms; "
          f"bare simulator in-process {1e3 * floor:.3f} ms")


if __name__ == "__main__":
    asyncio.run(main())
