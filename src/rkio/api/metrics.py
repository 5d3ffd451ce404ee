"""A small Prometheus text-format registry: counters and histograms observed by the API, plus gauges and
counters taken from ``EngineStatus`` at scrape time."""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import accumulate

from rkio.engine.types import EngineStatus

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TOKEN_GAP_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)

Labels = tuple[str, ...]
_INF = 'le="+Inf"'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Labels, values: Labels, extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@dataclass
class Counter:
    name: str
    help: str
    label_names: Labels = ()
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, *labels: str, by: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + by

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    label_names: Labels = ()
    # per label set: the count in each bucket alone (not cumulative), then +Inf's, count, sum; observed
    # per token, so one bisect and three additions (the cumulative counts are summed when rendered)
    series: dict[Labels, list[float]] = field(default_factory=dict)

    def observe(self, value: float, *labels: str) -> None:
        row = self.series.get(labels)
        if row is None:
            row = self.series[labels] = [0.0] * (len(self.buckets) + 3)
        row[bisect_left(self.buckets, value)] += 1
        row[-2] += 1
        row[-1] += value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, row in sorted(self.series.items()):
            for bound, count in zip(self.buckets, accumulate(row), strict=False):
                le = _labels(self.label_names, labels, f'le="{_number(bound)}"')
                yield f"{self.name}_bucket{le} {_number(count)}"
            yield f"{self.name}_bucket{_labels(self.label_names, labels, _INF)} {_number(row[-2])}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {_number(row[-2])}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {_number(row[-1])}"


def _gauge(name: str, help_text: str, samples: Iterable[tuple[str, float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    lines += [f"{name}{labels} {_number(value)}" for labels, value in samples]
    return lines


_METRIC_NAME = re.compile(r"[^a-zA-Z0-9_]")


class ApiMetrics:
    """Everything ``GET /metrics`` reports."""

    def __init__(self) -> None:
        self.requests = Counter("rkio_http_requests_total", "HTTP requests by endpoint and status.",
                                ("endpoint", "status"))
        self.duration = Histogram("rkio_http_request_duration_seconds", "End-to-end request latency.",
                                  label_names=("endpoint",))
        self.ttft = Histogram("rkio_time_to_first_token_seconds", "Request start to first token.",
                              label_names=("model",))
        self.token_gap = Histogram("rkio_inter_token_latency_seconds", "Time between tokens while streaming.",
                                   TOKEN_GAP_BUCKETS, ("model",))
        self.queue_wait = Histogram("rkio_queue_wait_seconds", "Time requests waited in the queue.",
                                    label_names=("model",))
        self.load_time = Histogram("rkio_model_load_seconds", "Model loads a request waited for.",
                                   label_names=("model",))
        self.prompt_tokens = Counter("rkio_prompt_tokens_total", "Prompt tokens processed.", ("model",))
        self.completion_tokens = Counter("rkio_completion_tokens_total", "Tokens generated.", ("model",))
        self.relayed_tokens = Counter("rkio_relayed_tokens_total",
                                      "Streamed tokens the runner wrote to the client's socket itself.",
                                      ("model",))
        self.disconnects = Counter("rkio_client_disconnects_total", "Requests abandoned by their client.",
                                   ("endpoint",))
        self.not_applied = Counter("rkio_settings_not_applied_total",
                                   "Request settings the model's runtime could not apply (the request ran).",
                                   ("model", "setting"))

    def render(self, status: EngineStatus | None) -> str:
        lines: list[str] = []
        for metric in (self.requests, self.duration, self.ttft, self.token_gap, self.queue_wait,
                       self.load_time, self.prompt_tokens, self.completion_tokens, self.relayed_tokens,
                       self.disconnects,
                       self.not_applied):
            lines += metric.render()
        if status is not None:
            lines += engine_lines(status)
        return "\n".join(lines) + "\n"


def engine_lines(status: EngineStatus) -> list[str]:
    """Gauges of the engine's current state and its monotonic counters (``rkio_engine_<name>_total``)."""
    lines: list[str] = []
    lines += _gauge("rkio_queue_length", "Requests waiting for a lane.", [("", status.queue_length)])
    lines += _gauge("rkio_running_generations", "Generations in progress.", [("", status.running)])
    lines += _gauge("rkio_npu_lanes", "Concurrent generations allowed.", [("", status.npu_lanes)])
    lines += _gauge("rkio_memory_budget_bytes", "Memory budget for models.", [("", status.budget_bytes)])
    lines += _gauge("rkio_memory_used_bytes", "Budget used by loaded models.", [("", status.used_bytes)])
    lines += _gauge("rkio_memory_free_bytes", "Budget still free.", [("", status.free_bytes)])
    lines += _gauge("rkio_models_loaded", "Loaded models.", [("", len(status.loaded))])
    per_model = [(f'{{model="{_escape(m.name)}"}}', m.bytes) for m in status.loaded]
    lines += _gauge("rkio_model_resident_bytes", "Planner's memory figure per loaded model.", per_model)
    rss = [(f'{{model="{_escape(m.name)}"}}', m.rss_bytes) for m in status.loaded if m.rss_bytes is not None]
    lines += _gauge("rkio_model_rss_bytes", "Last measured RSS of each model's runner.", rss)
    lines += _gauge("rkio_models_quarantined", "Models refused after repeated crashes.",
                    [("", len(status.quarantined))])
    for key, value in sorted(status.counters.items()):
        name = "rkio_engine_" + _METRIC_NAME.sub("_", key)
        if not name.endswith("_total"):
            name += "_total"
        lines += [f"# HELP {name} Engine counter {key}.", f"# TYPE {name} counter",
                  f"{name} {_number(value)}"]
    return lines
