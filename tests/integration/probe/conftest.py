"""Fixtures for the probe on the simulator: built libraries, sparse model files, a private sim state."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rkio.probe.plan import PairMode, ProbeConfig, ProbeModel
from rkio.probe.run import Prober
from rkio.probe.simulated import SimulatedGauge, sim_environment, sim_library, write_sim_model
from rkio.units import GiB

RunProbe = Callable[..., Prober]


@pytest.fixture
def run_probe(tmp_path: Path) -> RunProbe:
    """Run the probe's series on the simulator; sizes in bytes, header keys go into every model file."""

    def run(flavour: str, *sizes: int, overcommit: str | None = None, ram: int = 16 * GiB,
            modes: tuple[PairMode, ...] = tuple(PairMode), margin: int = 0, timeout: float = 60.0,
            header: dict[str, str | int] | None = None, npu_memory: str | None = None) -> Prober:
        state = tmp_path / "sim-state"
        models = tuple(
            ProbeModel.from_path(write_sim_model(tmp_path / f"m{size >> 20}.rkllm", size, header))
            for size in sizes)
        env = sim_environment(sim_library(flavour), state, ram, overcommit, npu_memory=npu_memory)
        config = ProbeConfig(models=models, margin_bytes=margin, pair_modes=modes, step_timeout=timeout,
                             max_new_tokens=8, env=env)
        prober = Prober(config, gauge=SimulatedGauge(ram, state))
        prober.run()
        return prober

    return run
