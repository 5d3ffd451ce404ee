"""Reading the simulator's machine-wide record of NPU jobs (``sim/npu_jobs.h``): every ``rkllm_run`` /
``rkllm_run_async`` of any process enters it when it starts and leaves it when it returns, so a test can
assert that no two runs were ever on the NPU at once (``read_npu_jobs(state)["overlaps"] == 0``)."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

from simkit.state import _alive


def npu_jobs_path(state_path: Path | str) -> Path:
    """The job file that goes with a simulator state file (``RKLLM_SIM_STATE``)."""
    return Path(f"{state_path}.npu-jobs")


def read_npu_jobs(state_path: Path | str) -> dict[str, Any]:
    """``{"jobs", "overlaps", "max_active", "active": [...], "overlap_log": [...]}``.

    ``jobs`` counts runs started, ``overlaps`` runs that started while another run (of any process) was
    inside the runtime, ``max_active`` the most runs inside at once. ``active`` lists the runs inside now
    (jobs of dead processes are left out, as the library drops them on its next access); ``overlap_log`` has
    the first overlaps: the entering run (``pid``, ``model``, ``time_ms``, wall clock) and one run that was
    inside (``other_pid``, ``other_model``, ``other_time_ms``: when it had entered).
    """
    result: dict[str, Any] = {"jobs": 0, "overlaps": 0, "max_active": 0, "active": [], "overlap_log": []}
    path = npu_jobs_path(state_path)
    if not path.exists():
        return result
    with open(path) as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        lines = f.read().splitlines()
    for line in lines:
        kind, _, rest = line.partition(" ")
        if kind in ("jobs", "overlaps", "max_active"):
            result[kind] = int(rest)
        elif kind == "active":
            job, pid, start, t_ms, *model = rest.split(" ", 4)
            if _alive(int(pid), int(start)):
                result["active"].append({"job": int(job), "pid": int(pid), "time_ms": int(t_ms),
                                         "model": model[0] if model else ""})
        elif kind == "overlap":
            t_ms, pid, job, other_pid, other_job, other_t_ms, models = rest.split(" ", 6)
            model, _, other_model = models.partition("\t")
            result["overlap_log"].append({
                "time_ms": int(t_ms), "pid": int(pid), "job": int(job), "model": model,
                "other_pid": int(other_pid), "other_job": int(other_job), "other_time_ms": int(other_t_ms),
                "other_model": other_model})
    return result
