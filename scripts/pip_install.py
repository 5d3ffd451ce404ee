#!/usr/bin/env python3
"""``pip install`` with a short progress report, for make and scripts/run.sh (standard library only).

``pip --quiet`` prints nothing for the ~10 minutes that llama-cpp-python's first build compiles llama.cpp
on two cores; ``pip -v`` prints thousands of lines. This runs ``python -m pip install -v ARGS...`` with
the interpreter it was started with, keeps the whole log in ``build/pip-install.log``, and prints what is
being installed (the packages asked for, not their dependencies), the compile's progress every 10%
(ninja's ``[n/total]`` lines), how long it took, and on failure the log's last lines. Exit status is pip's.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

STEP = re.compile(r"^\[(\d+)/(\d+)\]")  # ninja: [12/150] Building CXX object ...
NOTABLE = re.compile(r"^(Collecting|Building wheel for|Successfully installed|Successfully built|ERROR)")
TAIL = 40


def say(text: str) -> None:
    print(f"pip: {text}", file=sys.stderr, flush=True)


def main(args: list[str]) -> int:
    log_path = Path("build") / "pip-install.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=TAIL)
    started = time.monotonic()
    reported = -1
    command = [sys.executable, "-m", "pip", "install", "-v", "--progress-bar", "off", *args]
    with log_path.open("w") as log, subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace") as pip:
        assert pip.stdout is not None
        for line in pip.stdout:
            log.write(line)
            line = line.strip()
            tail.append(line)
            if step := STEP.match(line):
                done, total = int(step[1]), int(step[2])
                decile = done * 10 // max(total, 1)
                if decile > reported:
                    reported = decile
                    say(f"compiling {done}/{total} ({done * 100 // total}%, "
                        f"{time.monotonic() - started:.0f} s)")
            elif NOTABLE.match(line) and not (line.startswith("Collecting") and "(from " in line):
                say(line[:160])
                if line.startswith("Building wheel for"):
                    reported = -1
    took = time.monotonic() - started
    if pip.returncode != 0:
        say(f"failed after {took:.0f} s (exit {pip.returncode}); the last lines of {log_path}:")
        print("\n".join(tail), file=sys.stderr)
    else:
        say(f"done in {took:.0f} s (log: {log_path})")
    return pip.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
