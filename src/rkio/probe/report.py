"""The probe's outputs: a JSON report (what to send back) and a readable summary with tables."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from rkio import __version__
from rkio.probe.coverage import npu_coverage
from rkio.probe.diagnose import Diagnosis, diagnose
from rkio.probe.plan import PairResult, ProbeConfig, SoloResult, StepResult
from rkio.units import MiB

REPORT_VERSION = 2  # 2: solo npu_coverage; footprints carry covers_npu and npu_measures


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MiB:.0f}"


def footprint_records(config: ProbeConfig, solos: list[SoloResult]) -> list[dict[str, Any]]:
    """Measured solo footprints keyed the way the engine identifies a model file and its context size.

    ``covers_npu``: the figure includes a plausible MemAvailable drop, so the NPU buffers; ``npu_measures``:
    which of the runner's own measures were found to include them (None: undecided). See ``coverage``.
    """
    records = []
    for solo in solos:
        if solo.footprint_bytes is None:
            continue
        coverage = npu_coverage(solo.steps, solo.model.size_bytes)
        try:
            mtime_ns = os.stat(solo.model.path).st_mtime_ns
        except OSError:
            mtime_ns = 0
        records.append({"model": solo.model.name, "path": solo.model.path,
                        "size_bytes": solo.model.size_bytes, "mtime_ns": mtime_ns,
                        "max_context_len": config.max_context_len, "bytes": solo.footprint_bytes,
                        "covers_npu": coverage.drop_counts,
                        "npu_measures": None if coverage.measures is None else list(coverage.measures),
                        "source": "rkio probe"})
    return records


def coverage_record(steps: list[StepResult], size_bytes: int) -> dict[str, Any]:
    """The figures a solo run compared and which of them include the NPU buffers."""
    c = npu_coverage(steps, size_bytes)
    return {"drop_bytes": c.drop_bytes, "rss_bytes": c.rss_bytes, "runtime_bytes": c.runtime_bytes,
            "measures": None if c.measures is None else list(c.measures), "summary": c.summary()}


def build_report(config: ProbeConfig, solos: list[SoloResult], pairs: list[PairResult],
                 stopped: list[str], environment: dict[str, Any]) -> dict[str, Any]:
    """Everything a run found, as plain JSON data."""
    def step(s: StepResult) -> dict[str, Any]:
        return dataclasses.asdict(s)

    return {
        "report_version": REPORT_VERSION,
        "rkio_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"kernel": platform.release(), "arch": platform.machine(), **environment},
        "config": {"models": [dataclasses.asdict(m) for m in config.models],
                   "max_context_len": config.max_context_len, "max_new_tokens": config.max_new_tokens,
                   "prompt": config.prompt, "margin_bytes": config.margin_bytes,
                   "pair_modes": [m.value for m in config.pair_modes]},
        "solo": [{"model": s.model.name, "outcome": s.outcome.value, "footprint_bytes": s.footprint_bytes,
                  "reference": s.reference, "npu_coverage": coverage_record(s.steps, s.model.size_bytes),
                  "steps": [step(x) for x in s.steps]} for s in solos],
        "pairs": [{"mode": p.mode.value, "first": p.first.name, "second": p.second.name,
                   "combined_bytes": p.combined_bytes, "outcome": p.outcome.value,
                   "first_survived_second_load": p.first_survived_second_load,
                   "steps": [step(x) for x in p.steps]} for p in pairs],
        "findings": [{"finding": d.finding.value, "first": d.first, "second": d.second,
                      "evidence": d.evidence} for d in diagnose(pairs)],
        "stopped": stopped,
        "footprints": footprint_records(config, solos),
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _short(text: str | None, width: int = 40) -> str:
    if text is None:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def summary(report: dict[str, Any]) -> str:
    """Markdown tables of the solo ladder, the pairs and the findings."""
    lines = [f"rkio probe report (rkio {report['rkio_version']}, {report['created']})", ""]
    machine = report["machine"]
    if machine.get("runtime"):
        lines.append(f"runtime: {machine['runtime']}")
    for key in ("rknpu_version", "simulated"):
        if machine.get(key):
            lines.append(f"{key}: {machine[key]}")
    lines += ["", "Models alone (greedy, top_k=1):", ""]
    rows = []
    for solo in report["solo"]:
        load = solo["steps"][0] if solo["steps"] else {}
        coverage = solo.get("npu_coverage") or {}
        verdict = coverage.get("summary", "-") if solo["outcome"] == "ok" else "-"
        rows.append([solo["model"], solo["outcome"], _mib(solo["footprint_bytes"]),
                     _mib(load.get("mem_available_before")), _mib(coverage.get("drop_bytes")),
                     _mib(coverage.get("rss_bytes")), _mib(coverage.get("runtime_bytes")),
                     verdict, _short(solo["reference"]),
                     _short(load.get("detail"), 50) if solo["outcome"] != "ok" else ""])
    lines += _table(["model", "outcome", "footprint MiB", "MemAvailable before MiB", "MemAvailable drop MiB",
                     "VmRSS/VmHWM MiB", "memory_usage_mb MiB", "NPU buffers counted by", "reply", "detail"],
                    rows)
    if report["pairs"]:
        lines += ["", "Pairs (first loaded, then second, then both asked):", ""]
        rows = []
        for pair in report["pairs"]:
            by = {(s["model"], s["action"]): s for s in pair["steps"]}
            cells = [pair["mode"], f"{pair['first']} + {pair['second']}", _mib(pair["combined_bytes"])]
            for name, action in ((pair["second"], "load"), (pair["first"], "generate"),
                                 (pair["second"], "generate")):
                s = by.get((name, action))
                cells.append("-" if s is None else s["outcome"])
            failing = [s for s in pair["steps"] if s["outcome"] != "ok"]
            cells += ["yes" if pair["first_survived_second_load"] else "NO", pair["outcome"],
                      _short(failing[0]["detail"], 60) if failing else ""]
            rows.append(cells)
        lines += _table(["mode", "pair", "together MiB", "load 2nd", "1st answers", "2nd answers",
                         "1st survived", "outcome", "detail"], rows)
    lines += ["", "Findings:", ""]
    if report["findings"]:
        lines += [f"- {f['finding']}: {f['first']} + {f['second']}: {f['evidence']}"
                  for f in report["findings"]]
    else:
        lines.append("- none: every attempted combination loaded and answered as it did alone")
    if report["stopped"]:
        lines += ["", "Stopped:", ""] + [f"- {reason}" for reason in report["stopped"]]
    return "\n".join(lines) + "\n"


__all__ = ["Diagnosis", "build_report", "footprint_records", "summary", "write_report"]
