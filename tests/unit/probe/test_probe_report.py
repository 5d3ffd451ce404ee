"""The report a user sends back and the summary they read."""

from __future__ import annotations

import json
from pathlib import Path

from probe_fakeboard import FakeBoard

from rkio.probe.plan import ProbeConfig, ProbeModel
from rkio.probe.report import build_report, summary, write_report
from rkio.probe.run import Prober
from rkio.units import GiB, MiB


def test_report_round_trips_as_json_and_summary_names_the_findings(tmp_path: Path) -> None:
    files = []
    for size in (1536 * MiB, 3 * GiB):
        path = tmp_path / f"m-{size}"
        path.write_bytes(b"x")
        files.append(ProbeModel(f"m{size // MiB}", str(path), size))
    board = FakeBoard(overcommit="garbage")
    config = ProbeConfig(models=tuple(files), margin_bytes=0)
    prober = Prober(config, spawn=board.spawn, gauge=board.gauge)
    prober.run()
    report = build_report(config, prober.solos, prober.pairs, prober.stopped, {"runtime": "fake"})
    write_report(report, tmp_path / "out" / "probe.json")
    loaded = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert loaded["solo"][0]["reference"] == "reply of m-1610612736"
    assert [f["finding"] for f in loaded["findings"]] == ["domain problem"]
    assert {r["model"]: r["bytes"] for r in loaded["footprints"]} == {"m1536": 1536 * MiB, "m3072": 3 * GiB}
    assert loaded["footprints"][0]["max_context_len"] == 512
    # the fake board charges the buffers to the child's RSS, and MemAvailable falls by as much
    assert [(r["covers_npu"], r["npu_measures"]) for r in loaded["footprints"]] == [(True, ["rss"])] * 2
    assert loaded["solo"][0]["npu_coverage"]["drop_bytes"] == 1536 * MiB
    text = summary(loaded)
    assert "| m1536 | ok | 1536 | 16384 | 1536 | 1536 | - | rss (VmRSS/VmHWM) |" in text
    assert "| two processes, same base_domain_id | m3072 + m1536 | 4608 |" in text
    assert "corruption" in text and "- domain problem: m3072 + m1536" in text
