"""Instructions per streamed token, gateway and runner, counted by valgrind: the board-pace cost, no noise.

    .venv/bin/python benchmarks/instructions_bench.py [--short 100] [--long 300]

CPU time per token at an NPU's pace (``board_pace_bench.py``) is dominated on this VM by what a cold
wake-up costs, which varies by 2x from one minute to the next with the host's state. The user-space
instructions rkio executes per token do not: callgrind counts them exactly, so a change to the token path
shows here as a number that moves by its own effect only. Kernel work (syscalls, wake-ups, the TCP send)
is not counted.

The gateway: ``rkio serve`` under callgrind (instrumentation switched on only around one streamed reply),
the OpenAI SSE and Ollama NDJSON paths. The runner: ``RunnerProcess`` with the runner under callgrind,
a chat request as the server sends it. Each is measured for a ``--short`` and a ``--long`` reply: the
difference gives the cost of one more token, the rest is the cost of the request itself.
Needs ``valgrind`` (with ``callgrind_control``); prints why and exits 0 without it.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from http_bench import start_server, stream_once

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import simkit
from rkio.engine.registry import ModelRegistry
from rkio.engine.runner import RunnerProcess
from rkio.engine.runner.messages import RunnerDone, RunnerGeneration
from rkio.engine.types import ChatMessage
from rkio.runtime.base import GenerateParams

TOKEN_US = 20_000  # slow enough that every token is a frame and an HTTP chunk of its own


def callgrind(out: str) -> tuple[str, ...]:
    return ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}")


def instrument(pid: int, on: bool) -> None:
    """Switch callgrind's counting in process ``pid`` on or off (zeroing the counts when switched on)."""
    if on:
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(pid)], check=True,
                   capture_output=True)


def dump(pid: int, out: str, label: str) -> int:
    """Instructions counted in ``pid`` since it was switched on (callgrind writes them to ``out.N``)."""
    subprocess.run(["callgrind_control", "-d", label, str(pid)], check=True, capture_output=True)
    for _ in range(100):
        for path in glob.glob(out + ".*"):
            text = Path(path).read_text()
            if f"Trigger: dump {label}\n" in text:
                return next(int(line.split()[1]) for line in text.splitlines() if line.startswith("totals:"))
        time.sleep(0.1)
    raise SystemExit(f"no callgrind dump for {label}")


def gateway(tmp: Path, short: int, long: int) -> dict[str, tuple[int, int]]:
    """Per API: instructions for a ``short``-token and a ``long``-token streamed reply."""
    out = str(tmp / "gateway.cg")
    proc, url = start_server(tmp / "gw", TOKEN_US, long, prefix=callgrind(out), startup_s=300)
    try:
        for _ in range(2):  # load the model, warm every path once
            stream_once(url, "bench", 4, "openai")
            stream_once(url, "bench", 4, "ollama")
        results = {}
        for api in ("openai", "ollama"):
            counts = []
            for n in (short, long):
                instrument(proc.pid, True)
                stream_once(url, "bench", n, api)
                instrument(proc.pid, False)
                counts.append(dump(proc.pid, out, f"{api}-{n}"))
            results[api] = (counts[0], counts[1])
        return results
    finally:
        proc.terminate()
        proc.wait()


def runner(tmp: Path, short: int, long: int) -> tuple[int, int]:
    out = str(tmp / "runner.cg")

    class CountedRunner(RunnerProcess):
        argv: ClassVar[tuple[str, ...]] = (*callgrind(out), *RunnerProcess.argv)

    context = long + 1024
    models = tmp / "models"
    simkit.make_model(models / "bench" / "bench.rkllm", 32 << 20, max_context_limit=context,
                      kv_bytes_per_token=64)
    spec = ModelRegistry(models).get("bench")
    load = replace(spec.load, max_context_len=context, max_new_tokens=context)
    env = {"RKIO_RKLLM_LIB": str(simkit.sim_library("1.2.3")), "RKIO_RKLLM_ABI": "1.2.3",
           "RKLLM_SIM_STATE": str(tmp / "state"), "RKLLM_SIM_TOKEN_US": str(TOKEN_US),
           "RKLLM_SIM_PREFILL_US": "0", "RKLLM_SIM_INIT_MS": "0"}

    async def reply(proc: RunnerProcess, n: int) -> None:
        gen = RunnerGeneration(params=GenerateParams(max_new_tokens=n),
                               messages=(ChatMessage("user", f"bench words here [[n={n}]]"),))
        async for item in proc.generate(gen):
            if isinstance(item, RunnerDone):
                assert item.completion_tokens == n, item

    async def measure() -> tuple[int, int]:
        proc = await CountedRunner.start(spec, load, env=env, load_timeout=300)
        loop = asyncio.get_running_loop()
        try:
            await reply(proc, 4)
            counts = []
            for n in (short, long):  # callgrind_control blocks: it runs beside the loop
                await loop.run_in_executor(None, instrument, proc.pid, True)
                await reply(proc, n)
                await loop.run_in_executor(None, instrument, proc.pid, False)
                counts.append(await loop.run_in_executor(None, dump, proc.pid, out, f"runner-{n}"))
            return counts[0], counts[1]
        finally:
            await proc.stop(30.0)

    return asyncio.run(measure())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=300)
    args = parser.parse_args()
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("instructions per token: skipped (valgrind is not installed)")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="rkio-instructions-") as tmp:
        for api, (a, b) in gateway(Path(tmp), args.short, args.long).items():
            rows.append((f"gateway ({api})", a, b))
        rows.append(("runner", *runner(Path(tmp), args.short, args.long)))
    extra = args.long - args.short
    print(f"user-space instructions (callgrind), replies of {args.short} and {args.long} tokens\n")
    print(f"{'process':<18} {'per token':>10} {'per request':>12} {'per token at 200':>17}")
    for name, a, b in rows:
        per_token = (b - a) / extra
        per_request = a - per_token * args.short
        print(f"{name:<18} {per_token:>10,.0f} {per_request:>12,.0f} {per_token + per_request / 200:>17,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
