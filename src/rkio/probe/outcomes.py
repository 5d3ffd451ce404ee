"""What one probe step can end in, and the pure rules that decide it.

A step is one action in one child process: load a model into a handle, or generate a greedy reply.
The rules here look only at what the child reported and how it ended, so they are testable without a board.
"""

from __future__ import annotations

import signal
from collections import Counter
from enum import StrEnum


class Outcome(StrEnum):
    """The result of one step, worst last in ``SEVERITY``."""

    OK = "ok"
    SKIPPED = "skipped"  # not attempted: MemAvailable minus the margin could not hold the estimate
    REFUSED = "load refused"  # rkllm_init returned -1 (or the binding raised for it)
    ERROR = "error"  # the runtime returned an error for a generation
    HUNG = "hung"  # no answer within the step timeout; the child was killed
    CORRUPTION = "corruption"  # output differs from the model's solo greedy output, or is degenerate
    CRASHED = "crashed"  # the child died from a signal other than SIGKILL (SIGSEGV, SIGABRT, SIGBUS)
    KILLED = "killed"  # SIGKILL: the kernel's OOM killer (or a watchdog outside the probe)


SEVERITY: tuple[Outcome, ...] = (
    Outcome.OK,
    Outcome.SKIPPED,
    Outcome.REFUSED,
    Outcome.ERROR,
    Outcome.HUNG,
    Outcome.CORRUPTION,
    Outcome.CRASHED,
    Outcome.KILLED,
)

FAILURES = frozenset(SEVERITY) - {Outcome.OK, Outcome.SKIPPED}


def worst(outcomes: list[Outcome] | tuple[Outcome, ...]) -> Outcome:
    """The most severe outcome of several (OK for none)."""
    return max(outcomes, key=SEVERITY.index, default=Outcome.OK)


def exit_outcome(returncode: int | None) -> Outcome | None:
    """How a child that is gone ended, from ``Popen.returncode`` (negative = killed by that signal).

    ``None`` while it still runs. A clean exit while a step was pending counts as a crash too: the runtime
    called exit() underneath us (the simulator's ``exit_at_token`` fault does this, as do some aborts).
    """
    if returncode is None:
        return None
    if returncode == -signal.SIGKILL:
        return Outcome.KILLED
    return Outcome.CRASHED


def signal_name(returncode: int | None) -> str:
    """``SIGSEGV`` for -11, ``exit status 3`` for 3, ``running`` for None."""
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


def is_degenerate(text: str) -> bool:
    """True for output that is clearly not language: empty, all punctuation, or one symbol repeated.

    Catches the two reported garbage shapes: all commas from two handles in one process before 1.2.2
    (rknn-llm #367) and runs of "&&&&" from a model/runtime version mismatch (rkllama#102).
    """
    stripped = "".join(text.split())
    if not stripped:
        return True
    if not any(ch.isalnum() for ch in stripped):
        return True
    symbol, count = Counter(stripped).most_common(1)[0]
    return len(stripped) >= 8 and not symbol.isalnum() and count / len(stripped) >= 0.8


def output_outcome(solo: str | None, text: str) -> Outcome:
    """Compare a greedy reply with the same model's greedy reply when it was alone on the NPU.

    With top_k=1 the reply is deterministic, so any difference means the other resident model disturbed
    this one. Without a solo reference only the degeneracy test applies.
    """
    if is_degenerate(text):
        return Outcome.CORRUPTION
    if solo is not None and text != solo:
        return Outcome.CORRUPTION
    return Outcome.OK
