"""Learned model footprints, persisted as JSON under ``settings.state_dir``.

A figure is keyed by the model file's identity (path, size, mtime) plus the load parameters that change
memory (max_context_len) and the runtime, so a replaced file or a different context is re-learned.
Lookups are dictionary reads (the scheduler calls them); writes happen only when something changes.

An rkllm model's NPU buffers are shmem pages the runner need not map (tmp/researches/memory-analysis.md
§1.1, §1.6): VmRSS, VmHWM and the runtime's VmHWM-based ``memory_usage_mb`` may all leave them out, and the
MemAvailable drop is machine-wide noise as much as signal. So for rkllm models a figure counts below the
conservative estimate only when it is known to include the NPU buffers: ``rkio probe`` measured the model
and found which of the runner's measures ("rss": VmRSS/VmHWM, "runtime": ``memory_usage_mb``) covers them
(``confirm``), and a measurement with that measure was recorded, or the probe's own figure (which includes
the MemAvailable drop across a load on a quiet machine) was. CPU (llama.cpp) models learn from RSS alone.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rkio.engine.ledger import measured_bytes
from rkio.engine.planner import estimate_footprint
from rkio.engine.runner.messages import RunnerMemory
from rkio.engine.types import ModelSpec

log = logging.getLogger(__name__)

FILE_NAME = "footprints.json"
FORMAT_VERSION = 2  # 1: {"figures": {key: bytes}} without coverage (read as not covering NPU buffers)

NpuMeasure = Literal["rss", "runtime"]
NPU_MEASURES: tuple[NpuMeasure, ...] = ("rss", "runtime")


def model_key(spec: ModelSpec) -> str:
    return f"{spec.runtime}|{spec.path}|{spec.size_bytes}|{spec.mtime_ns}"


def footprint_key(spec: ModelSpec, max_context_len: int) -> str:
    return f"{model_key(spec)}|ctx={max_context_len}"


@dataclass(frozen=True, slots=True)
class Figure:
    """The largest footprint measured for one key; whether a measurement behind it covered NPU buffers."""

    bytes: int
    covers_npu: bool = False


def covers_npu(memory: RunnerMemory, measures: Collection[str]) -> bool:
    """Whether a runner's report includes its NPU buffers, given the measures the probe confirmed do."""
    return "rss" in measures or ("runtime" in measures and memory.runtime_mb is not None)


class FootprintStore:
    """Measured bytes per (model file, context, runtime); estimates where nothing trustworthy was measured."""

    def __init__(self, state_dir: Path | None) -> None:
        self.path = state_dir / FILE_NAME if state_dir is not None else None
        self.figures: dict[str, Figure] = {}
        self.npu_measures: dict[str, tuple[str, ...]] = {}  # model_key -> measures covering NPU buffers
        self._read()

    def lookup(self, spec: ModelSpec, max_context_len: int) -> tuple[int, bool]:
        """(bytes, learned): the learned figure when it can be trusted, else the conservative estimate.

        A learned figure never counts for less than the model file: the weights must be in RAM to run. For
        rkllm models a figure not known to include the NPU buffers only ever raises the estimate.
        """
        figure = self.figures.get(footprint_key(spec, max_context_len))
        estimate = estimate_footprint(spec.size_bytes, max_context_len)
        # a vision model's encoder comes on top: the LLM's measures do not include librknnrt's buffers
        encoder = spec.vision.encoder_bytes if spec.vision is not None else 0
        if figure is not None and (figure.covers_npu or spec.runtime != "rkllm"):
            return max(figure.bytes, spec.size_bytes) + encoder, True
        return max(estimate, figure.bytes if figure is not None else 0) + encoder, False

    def learn(self, spec: ModelSpec, max_context_len: int, memory: RunnerMemory) -> None:
        """Record a runner's report after a generation, noting whether it covers the NPU buffers."""
        npu = spec.runtime == "rkllm"
        covered = npu and covers_npu(memory, self.npu_measures.get(model_key(spec), ()))
        self.record(spec, max_context_len, measured_bytes(memory, npu=npu), covers_npu=covered)

    def record(self, spec: ModelSpec, max_context_len: int, nbytes: int, *, covers_npu: bool = False) -> None:
        """Remember a measurement; the stored figure only grows (peaks matter for admission)."""
        key = footprint_key(spec, max_context_len)
        old = self.figures.get(key, Figure(0))
        new = Figure(max(old.bytes, nbytes), old.covers_npu or covers_npu)
        if new != old:
            self.figures[key] = new
            self._write()

    def confirm(self, spec: ModelSpec, measures: Collection[str]) -> None:
        """Remember which of the runner's measures include this model file's NPU buffers (from the probe).

        The latest confirmation wins: an empty one says none does, so only the estimate or a covered figure
        counts from then on.
        """
        unknown = set(measures) - set(NPU_MEASURES)
        if unknown:
            raise ValueError(f"unknown NPU measures {sorted(unknown)}; known: {', '.join(NPU_MEASURES)}")
        value = tuple(sorted(set(measures)))
        if self.npu_measures.get(model_key(spec)) != value:
            self.npu_measures[model_key(spec)] = value
            self._write()

    def _read(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text())
            self.figures = {str(k): _figure(v) for k, v in data.get("figures", {}).items()}
            self.npu_measures = {str(k): tuple(str(m) for m in v)
                                 for k, v in data.get("npu_measures", {}).items()}
        except (OSError, ValueError, AttributeError, TypeError, KeyError) as exc:
            log.warning("ignoring unreadable footprint store %s: %s", self.path, exc)
            self.figures, self.npu_measures = {}, {}

    def _write(self) -> None:
        if self.path is None:
            return
        figures = {k: {"bytes": f.bytes, "covers_npu": f.covers_npu} for k, f in self.figures.items()}
        data = {"version": FORMAT_VERSION, "figures": figures,
                "npu_measures": {k: list(v) for k, v in self.npu_measures.items()}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)  # atomic: a crash never leaves half a file
        except OSError as exc:
            log.warning("cannot save footprints to %s: %s", self.path, exc)


def _figure(value: Any) -> Figure:
    if isinstance(value, Mapping):
        return Figure(int(value["bytes"]), bool(value.get("covers_npu", False)))
    return Figure(int(value))  # format 1: a bare number, coverage unknown
