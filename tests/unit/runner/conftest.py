"""A RunnerService on a thread with a FakeRuntime, driven with real frames (socketpair in, pipe out)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from runner_fakes import FakeRuntime, Peer


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer(FakeRuntime())
    yield p
    p.sock.close()
    p.thread.join(5)
