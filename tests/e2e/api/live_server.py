"""The live-server handle and the simulated models the e2e API tests use."""

from __future__ import annotations

import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import simkit

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
