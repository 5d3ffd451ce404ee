"""Taking the machine's NPU lock on behalf of a command (``rkio serve``, ``rkio probe``), with the one-line
refusal a user sees when another engine owns the board."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from rkio.engine.npu_lock import hold_npu_lock
from rkio.errors import NpuBusy


def claim_npu(stack: contextlib.ExitStack[bool | None], path: Path | None, prog: str) -> Path | None:
    """Hold the lock until ``stack`` closes and return its path; ``None`` after printing why it cannot be
    held (another engine owns the NPU, or the lock file cannot be created)."""
    try:
        return stack.enter_context(hold_npu_lock(path))
    except NpuBusy as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
    except OSError as exc:  # e.g. --npu-lock in a directory that cannot be written
        print(f"{prog}: cannot use the NPU lock file: {exc}", file=sys.stderr)
    return None
