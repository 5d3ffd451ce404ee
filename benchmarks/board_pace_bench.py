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
so the runner's own work can be told from the stand-in's. Last, what each server costs while idle (its own
wake-ups, charged to every token when tokens are slow), over 10 s.
Target (the board-pace issue): gateway + runner <= 500 us per token, i.e. <= 1 % of a core at 60 ms/token.

On a VM the cost of a cold wake-up moves with the host's state by 2x within minutes, so two versions are
compared side by side: ``--baseline SRC`` (the ``src`` directory of another checkout, e.g. a
``git worktree`` of an older commit) runs a second server from that code, streaming at the same time,
and both are reported. ``instructions_bench.py`` counts the instructions, which do not vary.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from http_bench import process_tree, start_server, stream_once

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import simkit

TARGET_US = 500.0
IDLE_S = 10.0


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
        # first a short run: the first one's one-time costs are not the stand-in's cost per token
        runtime.generate(GenerateParams(prompt="warm up [[n=5]]"), lambda token: got.append(token) or True)
        got.clear()
        before = cpu_ns(os.getpid())
        runtime.generate(GenerateParams(prompt=f"bench words here [[n={tokens}]]"),
                         lambda token: got.append(token) or True)
        return (cpu_ns(os.getpid()) - before) / 1000 / len(got)
    finally:
        runtime.destroy()


def measure(servers: dict[str, tuple[int, int, str]], api: str, tokens: int
            ) -> dict[str, tuple[float, float]]:
    """One streamed reply from every server at once: (gateway µs, runner µs) per token of each."""
    out: dict[str, tuple[float, float]] = {}

    def one(name: str) -> None:
        gateway, runner, url = servers[name]
        g0, r0 = cpu_ns(gateway), cpu_ns(runner)
        n = stream_once(url, "bench", tokens, api)[3]
        out[name] = ((cpu_ns(gateway) - g0) / 1000 / n, (cpu_ns(runner) - r0) / 1000 / n)

    threads = [threading.Thread(target=one, args=(name,)) for name in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--token-us", type=int, default=60_000)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="src directory of another rkio to run beside this one")
    args = parser.parse_args()
    trees = {"this": None} if args.baseline is None else {"this": None, "baseline": args.baseline.resolve()}
    rows: dict[str, list[tuple[str, float, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="rkio-board-pace-") as tmp:
        procs, servers = [], {}
        try:
            for name, src in trees.items():
                env = None if src is None else {"PYTHONPATH": str(src)}
                proc, url = start_server(Path(tmp) / name, args.token_us, args.tokens, env=env)
                procs.append(proc)
                stream_once(url, "bench", 4, "openai")  # load the model and warm up
                gateway, runner = process_tree(proc.pid)[:2]
                servers[name] = (gateway, runner, url)
            for api in ("openai", "ollama"):
                for _ in range(args.runs):
                    for name, (g, r) in measure(servers, api, args.tokens).items():
                        rows[name].append((api, g, r))
            # what the idle server costs (wake-ups of its own), charged to every token when tokens are slow
            before = {name: (cpu_ns(g), cpu_ns(r)) for name, (g, r, _) in servers.items()}
            time.sleep(IDLE_S)
            idle = {name: ((cpu_ns(g) - before[name][0]) / 1000 / IDLE_S,
                           (cpu_ns(r) - before[name][1]) / 1000 / IDLE_S)
                    for name, (g, r, _) in servers.items()}
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()
        bare = bare_runtime_us(args.token_us, min(args.tokens, 100), Path(tmp) / "bare")
    beside = f"; beside a baseline from {args.baseline}" if args.baseline else ""
    print(f"board pace: {args.token_us / 1000:g} ms per token, {args.tokens}-token streamed replies, "
          f"{args.runs} runs per API; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs{beside}")
    for name, result in rows.items():
        if len(rows) > 1:
            print(f"\n{name}:")
        print(f"\n{'api':<8} {'gateway µs':>11} {'runner µs':>10} {'total µs':>9} {'% core':>7}")
        for api, g, r in result:
            print(f"{api:<8} {g:>11.0f} {r:>10.0f} {g + r:>9.0f} {100 * (g + r) / args.token_us:>6.2f}%")
    print(f"\nsimulated runtime alone at the same pace: {bare:.0f} µs per token "
          "(part of the runner's figure: the stand-in's wait and callback)")
    for name, (g, r) in idle.items():
        print(f"{name} idle: gateway {g:.0f} µs, runner {r:.0f} µs of CPU per second")
    for name, result in rows.items():
        total = statistics.median(g + r for _, g, r in result)
        gateway = statistics.median(g for _, g, _ in result)
        runner = statistics.median(r for _, _, r in result)
        print(f"{name if len(rows) > 1 else 'median'}: gateway {gateway:.0f} + runner {runner:.0f}, "
              f"median total {total:.0f} µs per token ({100 * total / args.token_us:.2f} % of a core); "
              f"target <= {TARGET_US:.0f}: {'yes' if total <= TARGET_US else 'no'}; "
              f"without the stand-in's own cost: {total - bare:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
