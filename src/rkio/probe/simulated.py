"""``rkio probe --simulate``: the same experiments against the repository's runtime simulator.

This exists so every number in tmp/researches/memory-analysis.md §6 can be reproduced with one command on
any Linux machine. It builds ``sim/`` (``make -C sim OUT=build/sim``) when the flavour's library is missing,
writes sparse model files with the simulator's ``RKSIM`` header, and points the children at both.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from rkio.units import GiB

FLAVOURS = ("1.1.4", "1.2.0", "1.2.1", "1.2.3", "1.3.0")
OVERCOMMIT_MODES = ("fail", "segv", "garbage", "oom")
NPU_MEMORY_MODES = ("ledger", "dma")  # docs/simulator.md "NPU buffers and RSS"
REPO = Path(__file__).resolve().parents[3]


def sim_dir() -> Path:
    return Path(os.environ.get("RKIO_SIM_DIR", REPO / "build" / "sim"))


def sim_library(flavour: str) -> Path:
    """The simulator library of ``flavour``, building it from ``sim/`` first if needed."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown simulator flavour {flavour!r}; one of {', '.join(FLAVOURS)}")
    out = sim_dir()
    library = out / flavour / "librkllmrt.so"
    if not library.exists():
        if not (REPO / "sim" / "Makefile").exists():
            raise FileNotFoundError(f"{library} is missing and there is no sim/ source tree to build it")
        subprocess.run(["make", "-s", "-C", str(REPO / "sim"), f"OUT={out}"], check=True)
    if not library.exists():
        raise FileNotFoundError(f"building sim/ did not produce {library}")
    return library


def write_sim_model(path: Path, size_bytes: int, header: Mapping[str, str | int] | None = None) -> Path:
    """A sparse model file of ``size_bytes`` apparent size, with the simulator's RKSIM header."""
    lines = ["RKSIM"] + [f"{key}={value}" for key, value in (header or {}).items()]
    text = ("\n".join(lines) + "\n\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(text)
        fh.truncate(max(size_bytes, len(text)))
    return path


def sim_models(directory: Path, sizes: Sequence[int], header: Mapping[str, str | int] | None = None,
               ) -> list[Path]:
    """One model file per size, named by size (``sim-1.5g.rkllm``) so reports read naturally."""
    paths = []
    for size in sizes:
        label = f"{size / GiB:g}g"
        paths.append(write_sim_model(directory / f"sim-{label}.rkllm", size, header))
    return paths


def sim_environment(library: Path, state: Path, ram_bytes: int, overcommit: str | None,
                    base: Mapping[str, str] | None = None, npu_memory: str | None = None) -> dict[str, str]:
    """The children's environment: the library to load and the simulated machine's RAM and behaviour."""
    env = dict(os.environ if base is None else base)
    env.update({"RKIO_RKLLM_LIB": str(library), "RKLLM_SIM_STATE": str(state),
                "RKLLM_SIM_RAM": str(ram_bytes), "RKLLM_SIM_TOKEN_US": "0", "RKLLM_SIM_PREFILL_US": "0",
                "RKLLM_SIM_INIT_MS": "0"})
    if overcommit is not None:
        if overcommit not in OVERCOMMIT_MODES:
            raise ValueError(f"overcommit must be one of {', '.join(OVERCOMMIT_MODES)}")
        env["RKLLM_SIM_OVERCOMMIT"] = overcommit
    if npu_memory is not None:
        if npu_memory not in NPU_MEMORY_MODES:
            raise ValueError(f"npu_memory must be one of {', '.join(NPU_MEMORY_MODES)}")
        env["RKLLM_SIM_NPU_MEMORY"] = npu_memory
    return env


class SimulatedGauge:
    """Free simulated RAM: the simulator's RAM minus the reservations of live processes in its state file.

    On a board MemAvailable already reflects the children; sparse model files use no host memory, so the
    simulated machine's figure is read from the simulator's own bookkeeping instead. A reservation line is
    ``res <id> <pid> <start> <base_domain> <bytes> ...``; owners that died no longer count, as the simulator
    itself drops them on its next access.
    """

    def __init__(self, ram_bytes: int, state: Path) -> None:
        self.ram_bytes = ram_bytes
        self.state = state

    def reserved(self) -> int:
        try:
            lines = self.state.read_text().splitlines()
        except OSError:
            return 0
        total = 0
        for line in lines:
            fields = line.split()
            if len(fields) >= 6 and fields[0] == "res" and _alive(int(fields[2])):
                total += int(fields[5])
        return total

    def __call__(self, _resident: int) -> int:
        return self.ram_bytes - self.reserved()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X", "x")
