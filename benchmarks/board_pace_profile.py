"""Where a token's CPU goes at board pace: a ``perf`` profile of the gateway and the runner, by library.

    .venv/bin/python benchmarks/board_pace_profile.py [--api openai] [--token-us 60000] [--tokens 200]

``board_pace_bench.py`` says how much CPU a token costs; this says in which library it is spent: the
CPython interpreter, the kernel (wake-ups, the pipe, loopback TCP including the client's receive path),
uvloop, msgspec, ctypes, the simulated runtime. It also counts each process's voluntary context switches
(wake-ups) and minor page faults per token, over all its threads. It samples ``cpu-clock`` (a software
event, so it works in a VM without hardware counters) with ``perf record`` on both processes during
three streamed replies.
Needs ``perf`` and the right to attach to a process (root, or ``kernel.perf_event_paranoid`` <= 1);
not part of ``make bench``. Python 3.11 frames show only as ``_PyEval_EvalFrameDefault``: which Python
functions are hot is what ``instructions_bench.py`` (callgrind) tells.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from http_bench import process_tree, start_server, stream_once

SAMPLE_HZ = 20_000
TOP = 8


def wakeups_and_faults(pid: int) -> tuple[int, int]:
    """Voluntary context switches and minor page faults of every thread of ``pid`` so far."""
    switches = faults = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            continue
        switches += next(int(line.split()[1]) for line in status.splitlines()
                         if line.startswith("voluntary_ctxt_switches:"))
        faults += int(stat.rsplit(")", 1)[1].split()[7])  # minflt, the 10th field of proc(5)'s stat
    return switches, faults


def by_library(data: Path) -> list[str]:
    """``perf report``'s lines of the share of samples per shared object, biggest first."""
    report = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "-g", "none",
                             "--sort", "dso", "--stdio"], capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in report.splitlines() if line.strip() and not line.startswith("#")][:TOP]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", choices=("openai", "ollama"), default="openai")
    parser.add_argument("--token-us", type=int, default=60_000)
    parser.add_argument("--tokens", type=int, default=200)
    args = parser.parse_args()
    if shutil.which("perf") is None:
        print("perf is not installed", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="rkio-board-profile-") as tmp:
        proc, url = start_server(Path(tmp) / "server", args.token_us, args.tokens)
        try:
            stream_once(url, "bench", 50, args.api)  # load the model and warm up
            roles = dict(zip(("gateway", "runner"), process_tree(proc.pid)[:2], strict=True))
            recorders = {role: subprocess.Popen(
                ["perf", "record", "-F", str(SAMPLE_HZ), "-e", "cpu-clock", "-o", f"{tmp}/{role}.data",
                 "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for role, pid in roles.items()}
            time.sleep(1)  # perf attaches
            refused = [role for role, recorder in recorders.items() if recorder.poll() is not None]
            if refused:
                print(f"perf record could not attach to the {' and the '.join(refused)} (it needs root or "
                      "kernel.perf_event_paranoid <= 1)", file=sys.stderr)
                return 1
            before = {role: wakeups_and_faults(pid) for role, pid in roles.items()}
            tokens = sum(stream_once(url, "bench", args.tokens, args.api)[3] for _ in range(3))
            after = {role: wakeups_and_faults(pid) for role, pid in roles.items()}
            for recorder in recorders.values():
                recorder.send_signal(signal.SIGINT)
                recorder.wait()
        finally:
            proc.terminate()
            proc.wait()
        print(f"{tokens} tokens at {args.token_us / 1000:g} ms per token ({args.api}); "
              f"cpu-clock samples at {SAMPLE_HZ} Hz")
        for role in roles:
            switches, faults = (b - a for a, b in zip(before[role], after[role], strict=True))
            print(f"\n{role}: {switches / tokens:.2f} wake-ups and {faults / tokens:.2f} minor page faults "
                  "per token; CPU samples by library:")
            for line in by_library(Path(tmp) / f"{role}.data"):
                print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
