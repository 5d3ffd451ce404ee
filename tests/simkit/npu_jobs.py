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


def _job(fields: str) -> dict[str, Any]:
    """``T_MS PID JOB TAG MODEL`` of an overlap record."""
    t_ms, pid, job, tag, *model = fields.split(" ", 4)
    return {"time_ms": int(t_ms), "pid": int(pid), "job": int(job), "tag": tag,
            "model": model[0] if model else ""}


def read_npu_jobs(state_path: Path | str) -> dict[str, Any]:
    """``{"jobs", "overlaps", "max_active", "active": [...], "overlap_log": [...]}``.

    ``jobs`` counts runs started, ``overlaps`` runs that started while another run (of any process) was
    inside the runtime, ``max_active`` the most runs inside at once. ``active`` lists the runs inside now
    (jobs of dead processes are left out, as the library drops them on its next access). ``overlap_log``
    has the first overlaps as ``{"run": ..., "inside": ...}``: the entering run and one that was inside,
    each ``{"time_ms" (wall clock, when it entered), "pid", "job", "tag", "model"}``. ``tag`` is the first
    word of the run's prompt ("-" without one).
    """
    result: dict[str, Any] = {"jobs": 0, "overlaps": 0, "max_active": 0, "active": [], "overlap_log": []}
    path = npu_jobs_path(state_path)
    if not path.exists():
        return result
    with open(path) as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        lines = f.read().splitlines()
    for line in lines:
        kind, _, rest = line.strip().partition(" ")
        if kind in ("jobs", "overlaps", "max_active"):
            result[kind] = int(rest)
        elif kind == "active":
            job, pid, start, t_ms, tag, *model = rest.split(" ", 5)
            if _alive(int(pid), int(start)):
                result["active"].append({"job": int(job), "pid": int(pid), "time_ms": int(t_ms), "tag": tag,
                                         "model": model[0] if model else ""})
        elif kind == "overlap":
            result["overlap_log"].append({"run": _job(rest)})
        elif kind == "with" and result["overlap_log"]:
            result["overlap_log"][-1]["inside"] = _job(rest)
    return result
