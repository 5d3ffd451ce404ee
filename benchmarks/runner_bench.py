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
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import simkit
from rkio.engine.registry import ModelRegistry
from rkio.engine.runner import RunnerProcess
from rkio.engine.runner.messages import RunnerDone, RunnerGeneration
from rkio.engine.types import TokenChunk
from rkio.runtime.base import GenerateParams, LoadParams

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


def bare_runtime(load: LoadParams, env: dict[str, str], tokens: int, runs: int) -> tuple[float, float, float]:
    """The simulator driven directly (no runner): median TTFT, tokens/s and CPU s/token with a no-op sink."""
    os.environ.update(env)
    from rkio.runtime.rkllm import RkllmRuntime

    runtime = RkllmRuntime()
    runtime.load(load)
    try:
        firsts = []
        for _ in range(runs):
            started = time.perf_counter()
            seen: list[float] = []

            def first_token(_token: object, seen: list[float] = seen) -> bool:
                seen.append(time.perf_counter())
                return True

            runtime.generate(GenerateParams(prompt="[[n=1]] hi"), first_token)
            firsts.append(seen[0] - started)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        runtime.generate(GenerateParams(prompt=f"[[n={tokens}]] a b c d"), lambda _t: True)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        runtime.destroy()
    return statistics.median(firsts), tokens / wall, cpu / tokens


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--flavour", default="1.2.3")
    parser.add_argument("--ttft-runs", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        # a context big enough for the whole stream (the sim ends a reply at max_context_len)
        context = args.tokens + 1024
        simkit.make_model(models / "bench" / "bench.rkllm", 64 << 20, max_context_limit=context,
                          kv_bytes_per_token=64)
        spec = ModelRegistry(models).get("bench")
        load = replace(spec.load, max_context_len=context, max_new_tokens=context)
        env = {"RKIO_RKLLM_LIB": str(simkit.sim_library(args.flavour)), "RKIO_RKLLM_ABI": args.flavour,
               "RKLLM_SIM_STATE": str(Path(tmp) / "state"), "RKLLM_SIM_TOKEN_US": "0",
               "RKLLM_SIM_PREFILL_US": "0", "RKLLM_SIM_INIT_MS": "0"}
        # the simulator alone first, in this process, as the baseline
        bare_ttft, bare_rate, bare_cpu = bare_runtime(load, env, args.tokens, args.ttft_runs)
        runner = await RunnerProcess.start(spec, load, env=env)
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
            through = statistics.median(ttfts)
            print(f"bare runtime in this process: TTFT {1e3 * bare_ttft:.3f} ms, {bare_rate:,.0f} tokens/s, "
                  f"CPU {1e6 * bare_cpu:.2f} us/token")
            print(f"TTFT through RunnerProcess: median {1e3 * through:.3f} ms "
                  f"(p90 {1e3 * sorted(ttfts)[int(0.9 * len(ttfts))]:.3f} ms); "
                  f"added by rkio (difference of medians): {1e3 * (through - bare_ttft):.3f} ms")
            print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        finally:
            await runner.stop(5.0)


if __name__ == "__main__":
    asyncio.run(main())
