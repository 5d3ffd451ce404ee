"""CPU per token at board pace: what rkio costs while an NPU generates at the vendor's speed.

    .venv/bin/python benchmarks/board_pace_bench.py [--token-us 60000] [--tokens 200] [--runs 3]

On a board the runtime needs the same CPU cores rkio runs on, and tokens come every ~60 ms (Qwen2.5-1.5B
w8a8 on RK3588, airockchip/rknn-llm benchmark.md). At that pace every token is a cold wake-up of the
runner and the gateway, so the cost per token is far above the zero-cost benchmarks' microseconds.

``rkio serve`` runs on the simulator at ``--token-us`` per token; one client streams ``--tokens``-token
replies (OpenAI SSE, then Ollama NDJSON). CPU is read from ``/proc/<pid>/task/*/schedstat`` (nanoseconds
on the CPU, every thread) of the gateway and its runner, before and after each stream. The simulated
runtime has a cost of its own (its wait per token and the ctypes callback): the same generation driven
in-process through the binding with a no-op sink, at the same pace, is measured too and reported beside,
so the runner's own work can be told from the stand-in's.
Target (the board-pace issue): gateway + runner <= 500 us per token, i.e. <= 1 % of a core at 60 ms/token.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

from http_bench import process_tree, start_server, stream_once

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import simkit

TARGET_US = 500.0


def cpu_ns(pid: int) -> int:
    """Nanoseconds every thread of ``pid`` has spent on a CPU."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            total += int(Path(f"/proc/{pid}/task/{task}/schedstat").read_text().split()[0])
    return total


def bare_runtime_us(token_us: int, tokens: int, directory: Path) -> float:
    """CPU per token of the simulated runtime alone (binding + no-op sink) at ``token_us`` per token."""
    from rkio.runtime.base import GenerateParams, LoadParams
    from rkio.runtime.rkllm import RkllmRuntime

    os.environ.update(simkit.SimEnv.fresh(directory, token_us=token_us, prefill_us=0, init_ms=0).env({}))
    os.environ["RKIO_RKLLM_LIB"] = str(simkit.sim_library("1.2.3"))
    os.environ["RKIO_RKLLM_ABI"] = "1.2.3"
    runtime = RkllmRuntime()
    model = simkit.make_model(directory / "bare.rkllm", 32 << 20, max_context_limit=tokens + 1024)
    runtime.load(LoadParams(model_path=str(model), max_context_len=tokens + 1024, max_new_tokens=tokens + 64))
    try:
        got: list[object] = []
        before = cpu_ns(os.getpid())
        runtime.generate(GenerateParams(prompt=f"bench words here [[n={tokens}]]"),
                         lambda token: got.append(token) or True)
        return (cpu_ns(os.getpid()) - before) / 1000 / len(got)
    finally:
        runtime.destroy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token-us", type=int, default=60_000)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="rkio-board-pace-") as tmp:
        proc, url = start_server(Path(tmp), args.token_us, args.tokens)
        try:
            stream_once(url, "bench", 4, "openai")  # load the model and warm up
            gateway, runner = process_tree(proc.pid)[:2]
            for api in ("openai", "ollama"):
                for _ in range(args.runs):
                    g0, r0 = cpu_ns(gateway), cpu_ns(runner)
                    _, _, _, tokens = stream_once(url, "bench", args.tokens, api)
                    rows.append((api, (cpu_ns(gateway) - g0) / 1000 / tokens,
                                 (cpu_ns(runner) - r0) / 1000 / tokens))
        finally:
            proc.terminate()
            proc.wait()
        bare = bare_runtime_us(args.token_us, min(args.tokens, 100), Path(tmp) / "bare")
    print(f"board pace: {args.token_us / 1000:g} ms per token, {args.tokens}-token streamed replies, "
          f"{args.runs} runs per API; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs\n")
    print(f"{'api':<8} {'gateway µs':>11} {'runner µs':>10} {'total µs':>9} {'% core':>7}")
    for api, g, r in rows:
        print(f"{api:<8} {g:>11.0f} {r:>10.0f} {g + r:>9.0f} {100 * (g + r) / args.token_us:>6.2f}%")
    total = statistics.median(g + r for _, g, r in rows)
    print(f"\nsimulated runtime alone at the same pace: {bare:.0f} µs per token "
          "(part of the runner's figure: the stand-in's wait and callback)")
    print(f"median gateway + runner: {total:.0f} µs per token "
          f"({100 * total / args.token_us:.2f} % of a core); target <= {TARGET_US:.0f}: "
          f"{'yes' if total <= TARGET_US else 'no'}; without the stand-in's own cost: {total - bare:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
