"""The chaos soak, short profile (about a minute): ``make test`` runs it; ``make soak`` runs the long one.
Its pass criteria are counts (docs/reliability.md), never timings: the summary it prints says which failed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

SOAK = Path(__file__).resolve().parent / "soak.py"


def test_short_chaos_soak_meets_every_criterion() -> None:
    done = subprocess.run([sys.executable, str(SOAK), "--profile", "short"], capture_output=True, text=True,
                          timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    assert "SOAK PASSED" in done.stdout
