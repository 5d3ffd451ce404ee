"""Token throughput, CPU cost per token and added time-to-first-token through RunnerProcess on the simulator.

    .venv/bin/python benchmarks/runner_bench.py [--tokens 200000] [--flavour 1.2.3] [--ttft-runs 50]

The simulator produces tokens at zero cost, so every microsecond measured is rkio's (ctypes callback,
runner, frames, gateway). CPU: the gateway from getrusage(RUSAGE_SELF), the runner from /proc/<pid>/stat
while it is alive (RUSAGE_CHILDREN only counts reaped children).
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

from rkio.engine.registry import ModelRegistry
from rkio.engine.runner import RunnerProcess
from rkio.engine.types import RunnerDone, RunnerGeneration, TokenChunk
from rkio.runtime.base import GenerateParams

TICK = os.sysconf("SC_CLK_TCK")


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


async def stream(runner: RunnerProcess, prompt: str) -> tuple[float | None, int, int, RunnerDone]:
    started = time.perf_counter()
    first = None
    chunks = tokens = 0
    done = None
    async for item in runner.generate(RunnerGeneration(params=GenerateParams(prompt=prompt))):
        if isinstance(item, TokenChunk):
            if first is None:
                first = time.perf_counter() - started
            chunks += 1
            tokens += len(item.token_ids)
        else:
            done = item
    assert done is not None
    return first, chunks, tokens, done


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--flavour", default="1.2.3")
    parser.add_argument("--ttft-runs", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        simkit.make_model(models / "bench" / "bench.rkllm", 64 << 20)
        spec = ModelRegistry(models).get("bench")
        env = {"RKIO_RKLLM_LIB": str(simkit.sim_library(args.flavour)), "RKIO_RKLLM_ABI": args.flavour,
               "RKLLM_SIM_STATE": str(Path(tmp) / "state"), "RKLLM_SIM_TOKEN_US": "0",
               "RKLLM_SIM_PREFILL_US": "0", "RKLLM_SIM_INIT_MS": "0"}
        runner = await RunnerProcess.start(spec, spec.load, env=env)
        try:
            await stream(runner, "[[n=1000]] warm up")
            for _ in range(args.repeat):
                gateway0, runner0, wall0 = self_cpu(), process_cpu(runner.pid), time.perf_counter()
                _, chunks, tokens, done = await stream(runner, f"[[n={args.tokens}]] a b c d")
                wall = time.perf_counter() - wall0
                gateway, runner_cpu = self_cpu() - gateway0, process_cpu(runner.pid) - runner0
                assert done.completion_tokens == tokens == args.tokens, (done, tokens)
                print(f"stream: {tokens / wall:,.0f} tokens/s, {tokens / chunks:,.0f} tokens/frame, "
                      f"CPU {1e6 * (gateway + runner_cpu) / tokens:.2f} us/token "
                      f"(gateway {1e6 * gateway / tokens:.2f}, runner {1e6 * runner_cpu / tokens:.2f})")
            ttfts = []
            for _ in range(args.ttft_runs):
                first, _, _, _ = await stream(runner, "[[n=1]] hi")
                assert first is not None
                ttfts.append(first)
            print(f"TTFT (zero-cost runtime: all overhead): median {1e3 * statistics.median(ttfts):.3f} ms, "
                  f"p90 {1e3 * sorted(ttfts)[int(0.9 * len(ttfts))]:.3f} ms over {len(ttfts)} runs")
        finally:
            await runner.stop(5.0)


if __name__ == "__main__":
    asyncio.run(main())
