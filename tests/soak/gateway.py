"""The gateway under test: a real ``rkio serve`` process on the simulator, its models directory (healthy
models that do not all fit at once, one that crashes on every request, one whose load fails, one too big to
load), and what the soak observes from outside: its runners, its RSS, and what is left after it stops."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import simkit

FLAVOUR = "1.2.3"  # multi-instance and run_async work: any garbage or overlap is the server's doing
LAST_MESSAGE = "{{ messages[-1]['content'] }}"  # the sim then echoes exactly the last message's words
MODEL_FILE = 256 * simkit.MiB  # + 256 MiB runtime buffers + 14 MiB KV at 512 tokens: ~526 MiB per model
HEALTHY = ("alpha", "bravo", "charlie", "delta")
CRASHY = "echo-crashy"  # every run segfaults at token 2: quarantined after three crashes
INIT_FAIL = "echo-initfail"  # every load fails
HUGE = "echo-huge"  # larger than the whole budget
BUDGET = "1200MiB"  # two healthy models at once: a third means an eviction
SIM_RAM = 1400 * simkit.MiB  # so a server that loads past its budget overcommits the "board"


def make_models(models: Path, token_us: int) -> None:
    """The soak's models directory (sparse files: no disk space used)."""
    toml = f'chat_template = "{LAST_MESSAGE}"\nmax_context_len = 512\n'
    for name, extra in [*((n, {}) for n in HEALTHY), (CRASHY, {"fault": "segv_at_token:2"}),
                        (INIT_FAIL, {"fault": "init_fail"})]:
        simkit.make_model(models / name / f"{name}.rkllm", MODEL_FILE, token_us=token_us, **extra)
        (models / name / "model.toml").write_text(toml)
    simkit.make_model(models / HUGE / f"{HUGE}.rkllm", 3 * simkit.GiB)
    (models / HUGE / "model.toml").write_text(toml)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    children = [int(p) for p in out.split()]
    return [q for c in children for q in (c, *descendants(c))]


@dataclass
class Gateway:
    """One ``rkio serve`` process; ``seen`` collects every descendant pid observed while it ran."""

    home: Path
    process: subprocess.Popen[bytes]
    url: str
    state: Path
    seen: set[int] = field(default_factory=set)

    @classmethod
    def start(cls, home: Path, token_us: int, settings: dict[str, str]) -> Gateway:
        models = home / "models"
        if not models.exists():
            make_models(models, token_us)
        state = home / "sim-state"
        port = free_port()
        env = {**os.environ, "RKIO_RKLLM_LIB": str(simkit.sim_library(FLAVOUR)), "RKIO_RKLLM_ABI": FLAVOUR,
               "RKIO_HOME": str(home), "RKLLM_SIM_STATE": str(state), "RKLLM_SIM_RAM": str(SIM_RAM),
               "RKLLM_SIM_OVERCOMMIT": "fail", "RKIO_ABORT_GRACE": settings.pop("abort_grace", "2")}
        for name in ("RKLLM_SIM_FAULT", "RKLLM_SIM_TOKEN_US", "RKLLM_SIM_PREFILL_US", "RKLLM_SIM_INIT_MS"):
            env.pop(name, None)
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
        # its own board lock: other servers on this machine are not on this simulated board
        cmd = [sys.executable, "-m", "rkio", "serve", "--port", str(port), "--models-dir", str(models),
               "--runtime", "rkllm", "--memory-budget", BUDGET, "--log-level", "warning",
               "--npu-lock", str(home / "npu.lock"), *flags]
        with (home / "server.log").open("ab") as log:
            process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        gateway = cls(home, process, f"http://127.0.0.1:{port}", state)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"rkio serve exited early:\n{gateway.log_tail()}")
            try:
                if httpx.get(gateway.url + "/health", timeout=2).status_code == 200:
                    return gateway
            except httpx.HTTPError:
                time.sleep(0.2)
        process.kill()
        raise RuntimeError(f"rkio serve did not come up:\n{gateway.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        text = (self.home / "server.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def rss(self) -> int:
        return rss_bytes(self.process.pid) or 0

    def runners(self) -> list[int]:
        pids = descendants(self.process.pid)
        self.seen.update(pids)
        return pids

    async def status(self, client: httpx.AsyncClient) -> dict[str, Any]:
        reply = await client.get(self.url + "/rkio/status", timeout=10)
        result: dict[str, Any] = reply.json()
        return result

    def leftovers(self, wait: float) -> tuple[list[int], list[dict[str, Any]], list[dict[str, Any]]]:
        """After the gateway exited: (processes still alive, sim reservations, jobs inside the runtime),
        waiting up to ``wait`` seconds for them to go."""
        deadline = time.monotonic() + wait
        while True:
            procs = sorted(p for p in self.seen if alive(p))
            reservations = simkit.read_state(self.state)["reservations"]
            jobs = simkit.read_npu_jobs(self.state)["active"]
            if not (procs or reservations or jobs) or time.monotonic() > deadline:
                return procs, reservations, jobs
            time.sleep(0.2)

    def terminate(self, sig: signal.Signals, timeout: float) -> int | None:
        """Send ``sig``; the exit status, or None if it did not exit within ``timeout``."""
        self.runners()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def reap(self) -> None:
        """Last resort so that nothing outlives the soak, whatever the gateway did."""
        for pid in [self.process.pid, *self.seen]:
            if alive(pid) and b"rkio" in Path(f"/proc/{pid}/cmdline").read_bytes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait()
