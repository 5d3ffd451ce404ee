"""A live ``rkio serve`` subprocess on the simulator, for tests that drive it with real clients."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from live_server import LiveServer, launch

import simkit

FLAVOUR = "1.2.3"


@pytest.fixture(scope="session")
def sim_lib() -> Path:
    return simkit.sim_library(FLAVOUR)


@pytest.fixture
def start_server(sim_lib: Path, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(*flags: str, flavour: str = FLAVOUR, env: dict[str, str] | None = None) -> LiveServer:
        library = sim_lib if flavour == FLAVOUR else simkit.sim_library(flavour)
        server = launch(tmp_path / f"home{len(servers)}", library, flavour, *flags, env=env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        with contextlib.suppress(ProcessLookupError):  # the server and any runner left in its group
            os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


@pytest.fixture
def server(start_server: Callable[..., LiveServer]) -> Iterator[LiveServer]:
    live = start_server()
    yield live
    assert live.stop() == 0, live.log()
