"""Hand the probe's measured footprints to the engine's learned-footprint store.

The engine admits a model by its learned footprint when it has one and by a conservative estimate
otherwise (``rkio.engine.footprints``). A probe run measures each model alone, so its figures can seed the
store before the server ever loads the model, either directly after a run (``--save-footprints``) or
later from a report produced on another machine (``--import-footprints probe.json``).
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
    """Record every figure (the store keeps the larger of old and new); returns how many were given."""
    store = FootprintStore(state_dir)
    count = 0
    for record in records:
        store.record(spec_of(record), int(record["max_context_len"]), int(record["bytes"]))
        count += 1
    return count


def import_report(report: Path, state_dir: Path) -> int:
    """Load a probe.json and record its footprints."""
    data = json.loads(report.read_text())
    return save_footprints(data.get("footprints", []), state_dir)
