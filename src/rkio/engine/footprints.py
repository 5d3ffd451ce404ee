"""Learned model footprints, persisted as JSON under ``settings.state_dir``.

A figure is keyed by the model file's identity (path, size, mtime) plus the load parameters that change
memory (max_context_len) and the runtime, so a replaced file or a different context is re-learned.
Lookups are dictionary reads (the scheduler calls them); writes happen only when a figure grows.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from rkio.engine.planner import estimate_footprint
from rkio.engine.types import ModelSpec

log = logging.getLogger(__name__)

FILE_NAME = "footprints.json"


def footprint_key(spec: ModelSpec, max_context_len: int) -> str:
    return f"{spec.runtime}|{spec.path}|{spec.size_bytes}|{spec.mtime_ns}|ctx={max_context_len}"


class FootprintStore:
    """Measured bytes per (model file, context, runtime); estimates where nothing was measured yet."""

    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / FILE_NAME if state_dir is not None else None
        self.figures: dict[str, int] = self._read()

    def lookup(self, spec: ModelSpec, max_context_len: int) -> tuple[int, bool]:
        """(bytes, learned): the learned figure when known, else the conservative estimate.

        A learned figure never counts for less than the model file: the weights must be in RAM to run,
        and a measurement below that (the process RSS of a runtime that maps its NPU buffers outside
        the process, and reports no memory_usage_mb, as rkllm before 1.2.1) under-counts.
        """
        learned = self.figures.get(footprint_key(spec, max_context_len))
        if learned is not None:
            return max(learned, spec.size_bytes), True
        return estimate_footprint(spec.size_bytes, max_context_len), False

    def record(self, spec: ModelSpec, max_context_len: int, nbytes: int) -> None:
        """Remember a measurement; the stored figure only grows (peaks matter for admission)."""
        key = footprint_key(spec, max_context_len)
        if nbytes <= self.figures.get(key, 0):
            return
        self.figures[key] = nbytes
        self._write()

    def _read(self) -> dict[str, int]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
            return {str(k): int(v) for k, v in data.get("figures", {}).items()}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ignoring unreadable footprint store %s: %s", self.path, exc)
            return {}

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": 1, "figures": self.figures}, indent=1, sort_keys=True))
            os.replace(tmp, self.path)  # atomic: a crash never leaves half a file
        except OSError as exc:
            log.warning("cannot save footprints to %s: %s", self.path, exc)
