"""The live-server handle and the simulated models the e2e API tests use."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

import simkit
from simkit.vision import add_vision_model, sim_rknn_library

LAST_MESSAGE_TEMPLATE = "{{ messages[-1]['content'] }}"  # the sim then echoes exactly the last message


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM and wait: the exit status of a graceful shutdown."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_models(models: Path) -> None:
    """sim-a: plain; sim-echo: echoes the last message only, small context; sim-slow: 20 ms/token."""
    simkit.make_model(models / "sim-a" / "sim-a.rkllm", 32 << 20)
    simkit.make_model(models / "sim-echo" / "sim-echo.rkllm", 32 << 20)
    (models / "sim-echo" / "model.toml").write_text(
        f'chat_template = "{LAST_MESSAGE_TEMPLATE}"\nmax_context_len = 512\n')
    simkit.make_model(models / "sim-slow" / "sim-slow.rkllm", 32 << 20, token_us=20000)
    add_vision_model(models, "sim-vl", llm_bytes=32 << 20)  # the .rkllm, its .rknn encoder, [vision]


def launch(home: Path, sim_lib: Path, flavour: str, *flags: str,
           env: Mapping[str, str] | None = None) -> LiveServer:
    """``rkio serve`` on the simulator over ``make_models`` under ``home``, returned once it is healthy;
    ``env``: more environment (settings as ``RKIO_<NAME>``)."""
    make_models(home / "models")
    port = free_port()
    env = {**os.environ, "RKIO_RKLLM_LIB": str(sim_lib), "RKIO_RKLLM_ABI": flavour,
           "RKIO_RKNN_LIB": str(sim_rknn_library()),
           "RKIO_HOME": str(home),
           "RKLLM_SIM_STATE": str(home / "sim-state"), "RKLLM_SIM_TOKEN_US": "0",
           "RKLLM_SIM_PREFILL_US": "0", "RKLLM_SIM_INIT_MS": "0", **(env or {})}
    log_path = home / "server.log"
    cmd = [sys.executable, "-m", "rkio", "serve", "--port", str(port),
           "--models-dir", str(home / "models"),
           "--runtime", "rkllm", "--memory-budget", "2GiB", "--stop-grace", "3",
           "--npu-lock", str(home / "npu.lock"), *flags]  # each server its own simulated board
    with log_path.open("wb") as log:
        # its own process group: a test can kill a board with its runners at once (os.killpg)
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = LiveServer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"rkio serve exited early:\n{server.log()}")
        try:
            if httpx.get(server.url + "/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise AssertionError(f"rkio serve did not come up:\n{server.log()}")
