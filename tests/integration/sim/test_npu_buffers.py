"""RKLLM_SIM_NPU_MEMORY: where the simulator keeps a handle's NPU buffers, and what memory_usage_mb says.

Each case loads one model in a child Python process (through rkio's binding) and reports what that process
can see of itself: its VmRSS/VmHWM, the memfd holding the buffers (if any) and the runtime's figure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import simkit
from simkit import SimEnv

MiB = simkit.MiB
FILE, BUFFER, CTX = 96 * MiB, 32 * MiB, 512
HELD = simkit.footprint(FILE, CTX, buffer_bytes=BUFFER)

CHILD = r"""
import json, os, sys
from rkio.runtime.base import GenerateParams, LoadParams
from rkio.runtime.rkllm import RkllmRuntime

def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}

def buffers():
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:rknpu-sim-buffers"):
                st = os.stat(f"/proc/self/fd/{fd}")
                found.append({"size": st.st_size, "allocated": st.st_blocks * 512})
        except OSError:
            pass
    return found

library, abi, model, ctx = sys.argv[1:5]
out = {"before": status()}
runtime = RkllmRuntime(library=library, abi=abi)
try:
    runtime.load(LoadParams(model_path=model, max_context_len=int(ctx)))
except Exception as exc:
    out["error"] = str(exc)
    print(json.dumps(out))
    sys.exit(0)
out["loaded"], out["buffers"] = status(), buffers()
perf = runtime.generate(GenerateParams(prompt="hello"), lambda token: True).perf
out["runtime_mb"] = perf.memory_usage_mb if perf is not None else None
out["after_run"] = status()
runtime.destroy()
out["buffers_after_destroy"] = buffers()
print(json.dumps(out))
"""


def load_in_child(tmp_path: Path, flavour: str, **sim_settings: object) -> dict[str, object]:
    sim = SimEnv.fresh(tmp_path, **sim_settings)  # type: ignore[arg-type]
    model = simkit.make_model(tmp_path / "m.rkllm", FILE, buffer_bytes=BUFFER)
    env = sim.env()
    env["PYTHONPATH"] = str(simkit.REPO / "src")
    argv = [sys.executable, "-c", CHILD, str(simkit.sim_library(flavour)), flavour, str(model), str(CTX)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    result["stderr"] = proc.stderr
    # the raw file: read_state() would leave out the reservations of the (now dead) child anyway
    lines = sim.state_path.read_text().splitlines()
    result["reservations"] = [line for line in lines if line.startswith("res ")]
    return result


@pytest.mark.parametrize("flavour", ["1.2.3", "1.1.4"])
def test_dma_mode_takes_the_buffers_from_the_machine_but_not_into_rss(tmp_path: Path, flavour: str) -> None:
    out = load_in_child(tmp_path, flavour, npu_memory="dma")
    assert out["buffers"] == [{"size": HELD, "allocated": HELD}]  # real pages, in an unmapped memfd
    before, after = out["before"], out["after_run"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert after["VmHWM"] - before["VmHWM"] < HELD // 4  # the 160 MiB are not in the process's figures
    if flavour == "1.2.3":  # memory_usage_mb is the process's VmHWM, as documented: it misses them too
        assert out["runtime_mb"] == pytest.approx(after["VmHWM"] / MiB, abs=2)
    else:
        assert out["runtime_mb"] is None  # no perf stats before 1.2.1
    assert out["buffers_after_destroy"] == []
    assert out["reservations"] == []  # rkllm_destroy gave the ledger's share back


def test_ledger_mode_allocates_nothing_and_reports_the_footprint(tmp_path: Path) -> None:
    out = load_in_child(tmp_path, "1.2.3")
    assert out["buffers"] == []
    assert out["runtime_mb"] == pytest.approx(HELD / MiB)


def test_dma_mode_refuses_to_starve_the_host(tmp_path: Path) -> None:
    out = load_in_child(tmp_path, "1.2.3", npu_memory="dma", extra={"RKLLM_SIM_HOST_RESERVE": str(1 << 60)})
    assert "error" in out
    assert f"E rkllm: failed to malloc npu memory, size: {HELD}" in str(out["stderr"])
    assert out["reservations"] == []  # the failed init gave the ledger's share back
