"""Reading the simulator's machine-wide NPU memory state, and per-test simulator environments."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simkit.library import DOMAIN_BYTES, N_DOMAINS


def _proc_identity(pid: int) -> tuple[int, bool] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[19]), fields[0] in ("Z", "X", "x")


def _alive(pid: int, start_time: int) -> bool:
    ident = _proc_identity(pid)
    return ident is not None and not ident[1] and ident[0] == start_time


def read_state(state_path: Path | str) -> dict[str, Any]:
    """The simulator's machine-wide NPU memory state, shaped like ``rkllm_sim_state()``'s JSON.

    Reservations of dead processes are left out (the library prunes them on its next access).
    """
    state: dict[str, Any] = {
        "path": str(state_path),
        "domain_bytes": DOMAIN_BYTES,
        "n_domains": N_DOMAINS,
        "reservations": [],
        "overcommits": 0,
        "overcommit_log": [],
        "oom_kills": [],
    }
    p = Path(state_path)
    lines: list[str] = []
    if p.exists():
        with open(p) as f:
            fcntl.flock(f, fcntl.LOCK_SH)
            lines = f.read().splitlines()
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind == "overcommits":
            state["overcommits"] = int(rest)
        elif kind == "res":
            parts = rest.split(" ", 7)
            rid, pid, start, base, nbytes, shares, version = parts[:7]
            if not _alive(int(pid), int(start)):
                continue
            domains = {}
            if shares != "-":
                for item in shares.split(","):
                    d, b = item.split(":")
                    domains[d] = int(b)
            state["reservations"].append(
                {
                    "id": int(rid),
                    "pid": int(pid),
                    "start_time": int(start),
                    "base_domain": int(base),
                    "bytes": int(nbytes),
                    "domains": domains,
                    "version": version,
                    "model": parts[7] if len(parts) > 7 else "",
                }
            )
        elif kind == "oc":
            t, pid, okind, nbytes, mode, domain, *model = rest.split(" ", 6)
            state["overcommit_log"].append(
                {
                    "time_ms": int(t),
                    "pid": int(pid),
                    "kind": okind,
                    "bytes": int(nbytes),
                    "mode": mode,
                    "domain": int(domain),
                    "model": model[0] if model else "",
                }
            )
        elif kind == "oom":
            t, victim, killer, nbytes = rest.split()
            state["oom_kills"].append(
                {
                    "time_ms": int(t),
                    "victim_pid": int(victim),
                    "killer_pid": int(killer),
                    "bytes": int(nbytes),
                }
            )
    res = state["reservations"]
    state["used_bytes"] = sum(r["bytes"] for r in res)
    state["domain_used"] = [sum(r["domains"].get(str(d), 0) for r in res) for d in range(N_DOMAINS)]
    return state


@dataclass
class SimEnv:
    """Simulator settings for one test; ``env()`` gives the environment for a process using the sim."""

    state_path: Path
    ram_bytes: int | None = None
    overcommit: str | None = None  # fail | segv | garbage | oom
    token_us: int | None = None
    prefill_us: int | None = None
    init_ms: int | None = None
    fault: str | None = None
    npu_memory: str | None = None  # ledger | dma (docs/simulator.md "NPU buffers and RSS")
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def fresh(cls, directory: Path | str, **kwargs: Any) -> SimEnv:
        """A SimEnv whose state file lives in ``directory`` (e.g. pytest's tmp_path), so tests never share."""
        return cls(state_path=Path(directory) / "rkllm-sim-state.txt", **kwargs)

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default os.environ) plus the RKLLM_SIM_* variables of this SimEnv."""
        env = dict(os.environ if base is None else base)
        values = {
            "RKLLM_SIM_STATE": str(self.state_path),
            "RKLLM_SIM_RAM": self.ram_bytes,
            "RKLLM_SIM_OVERCOMMIT": self.overcommit,
            "RKLLM_SIM_TOKEN_US": self.token_us,
            "RKLLM_SIM_PREFILL_US": self.prefill_us,
            "RKLLM_SIM_INIT_MS": self.init_ms,
            "RKLLM_SIM_FAULT": self.fault,
            "RKLLM_SIM_NPU_MEMORY": self.npu_memory,
        }
        for key, value in values.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        env.update(self.extra)
        return env

    def apply(self) -> None:
        """Exports the variables into this process (for in-process ctypes use)."""
        for key, value in self.env().items():
            if key.startswith("RKLLM_SIM_") or key in self.extra:
                os.environ[key] = value
        for key in [k for k in os.environ if k.startswith("RKLLM_SIM_")]:
            if key not in self.env():
                del os.environ[key]

    def read_state(self) -> dict[str, Any]:
        return read_state(self.state_path)
