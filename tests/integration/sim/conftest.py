"""Fixtures for the simulator's own tests: a C driver compiled per flavour against sim/rkllm_abi.h."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import simkit

HERE = Path(__file__).resolve().parent


@dataclass
class DriverResult:
    """Parsed output of one sim_driver process."""

    returncode: int
    pid: int
    events: list[dict[str, Any]]
    stderr: str

    def callbacks(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "callback"]

    def texts(self) -> list[str]:
        """Token texts with WAITING pieces merged, as a binding would deliver them."""
        out: list[str] = []
        pending = b""
        for cb in self.callbacks():
            if cb["state"] not in (simkit.RUN_NORMAL, simkit.RUN_WAITING):
                continue
            pending += bytes.fromhex(cb["text_hex"])
            if cb["state"] == simkit.RUN_NORMAL:
                out.append(pending.decode())
                pending = b""
        return out

    def docs(self, name: str) -> list[dict[str, Any]]:
        return [e["doc"] for e in self.events if e["event"] == name]

    def rcs(self) -> list[int]:
        return [e["rc"] for e in self.events if e["event"] == "rc"]


def _build_driver(flavour: str, out_dir: Path) -> Path:
    lib = simkit.sim_library(flavour)
    major, minor, patch = flavour.split(".")
    exe = out_dir / f"sim_driver-{flavour}"
    subprocess.run(
        [
            "gcc", "-std=gnu11", "-O1", "-Wall", "-Werror",
            f"-I{simkit.SIM_SOURCES}",
            f"-DSIM_V_MAJOR={major}", f"-DSIM_V_MINOR={minor}", f"-DSIM_V_PATCH={patch}",
            str(HERE / "sim_driver.c"), "-o", str(exe),
            f"-L{lib.parent}", "-lrkllmrt", f"-Wl,-rpath,{lib.parent}",
        ],
        check=True,
    )  # fmt: skip
    return exe


class DriverRunner:
    """Runs one flavour's driver: ``runner(model, *steps, env=...)``."""

    def __init__(self, executable: Path) -> None:
        self.executable = executable

    def __call__(self, model: Path, *steps: str, env: Mapping[str, str], timeout: float = 20) -> DriverResult:
        proc = subprocess.Popen(
            [str(self.executable), str(model), *steps],
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = proc.communicate(timeout=timeout)
        events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
        return DriverResult(proc.returncode, proc.pid, events, err.decode(errors="replace"))


@pytest.fixture(scope="session")
def sim_driver(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], DriverRunner]:
    """``sim_driver(flavour)(model, *steps, env=...)`` runs the C driver and parses its JSON lines."""
    out_dir = tmp_path_factory.mktemp("sim-driver")
    built: dict[str, Path] = {}

    def for_flavour(flavour: str) -> DriverRunner:
        if flavour not in built:
            built[flavour] = _build_driver(flavour, out_dir)
        return DriverRunner(built[flavour])

    return for_flavour
