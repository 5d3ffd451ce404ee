"""A live ``rkio serve`` subprocess on the simulator, for tests that drive it with real clients."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer, free_port, make_models

import simkit

FLAVOUR = "1.2.3"


@pytest.fixture(scope="session")
def sim_lib() -> Path:
    return simkit.sim_library(FLAVOUR)


@pytest.fixture
def start_server(sim_lib: Path, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(*flags: str) -> LiveServer:
        home = tmp_path / f"home{len(servers)}"
        make_models(home / "models")
        port = free_port()
        env = {**os.environ, "RKIO_RKLLM_LIB": str(sim_lib), "RKIO_RKLLM_ABI": FLAVOUR,
               "RKIO_HOME": str(home),
               "RKLLM_SIM_STATE": str(home / "sim-state"), "RKLLM_SIM_TOKEN_US": "0",
               "RKLLM_SIM_PREFILL_US": "0", "RKLLM_SIM_INIT_MS": "0"}
        log_path = home / "server.log"
        cmd = [sys.executable, "-m", "rkio", "serve", "--port", str(port),
               "--models-dir", str(home / "models"),
               "--runtime", "rkllm", "--memory-budget", "2GiB", "--stop-grace", "3",
               "--npu-lock", str(home / "npu.lock"), *flags]  # each server its own simulated board
        with log_path.open("wb") as log:
            process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
        servers.append(server)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"rkio serve exited early:\n{server.log()}")
            try:
                if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                    return server
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError(f"rkio serve did not come up:\n{server.log()}")

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


@pytest.fixture
def server(start_server: Callable[..., LiveServer]) -> Iterator[LiveServer]:
    live = start_server()
    yield live
    assert live.stop() == 0, live.log()
