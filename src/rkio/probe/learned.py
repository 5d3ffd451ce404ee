"""Hand the probe's measured footprints to the engine's learned-footprint store.

The engine admits a model by its learned footprint when it has one and by a conservative estimate
otherwise (``rkio.engine.footprints``). A probe run measures each model alone, so its figures can seed the
store before the server ever loads the model, either directly after a run (``--save-footprints``) or
later from a report produced on another machine (``--import-footprints probe.json``).

Each record also says whether its figure includes the NPU buffers (``covers_npu``) and which of the runner's
measures were found to include them (``npu_measures``, see ``rkio.probe.coverage``); the store keeps that
confirmation so the server may trust those measures for this model file. Reports from before these fields
(report_version 1) seed figures that only ever raise the server's estimate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rkio.engine.footprints import FootprintStore
from rkio.engine.types import ModelSpec
from rkio.runtime.base import LoadParams


def spec_of(record: Mapping[str, Any]) -> ModelSpec:
    """The ModelSpec fields the store keys on, rebuilt from a report's footprint record."""
    return ModelSpec(name=str(record["model"]), path=str(record["path"]), runtime="rkllm",
                     size_bytes=int(record["size_bytes"]), mtime_ns=int(record["mtime_ns"]),
                     load=LoadParams(model_path=str(record["path"]),
                                     max_context_len=int(record["max_context_len"])))


def save_footprints(records: Iterable[Mapping[str, Any]], state_dir: Path) -> int:
    """Record every figure (the store keeps the larger of old and new) and every NPU-measure confirmation;
    returns how many figures were given."""
    store = FootprintStore(state_dir)
    count = 0
    for record in records:
        spec = spec_of(record)
        store.record(spec, int(record["max_context_len"]), int(record["bytes"]),
                     covers_npu=bool(record.get("covers_npu", False)))
        measures = record.get("npu_measures")
        if measures is not None:
            store.confirm(spec, [str(m) for m in measures])
        count += 1
    return count


def import_report(report: Path, state_dir: Path) -> int:
    """Load a probe.json and record its footprints."""
    data = json.loads(report.read_text())
    return save_footprints(data.get("footprints", []), state_dir)
