"""What the session and a runner exchange: the generation sent, the stream's last item, how the process ended.

Frozen dataclasses (msgspec encodes them inside the runner's frames); no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rkio.engine.types import ChatMessage, HandleState
from rkio.runtime.base import GenerateParams, Perf, RunOutputs


@dataclass(frozen=True, slots=True)
class RunnerExit:
    """How a runner process ended. ``signal`` set when killed by one (SIGSEGV, SIGKILL of the OOM killer)."""

    returncode: int | None
    signal: int | None
    during: Literal["load", "generation", "idle", "stop"]
    last_error: str | None  # last error line the runtime printed, if any

    def describe(self, model: str) -> str:
        import signal as _signal

        if self.signal is not None:
            try:
                cause = f"crashed with {_signal.Signals(self.signal).name}"
            except ValueError:
                cause = f"crashed with signal {self.signal}"
        else:
            cause = f"exited with status {self.returncode}"
        text = f"runner for {model} {cause} during {self.during}"
        return f"{text}: {self.last_error}" if self.last_error else text


@dataclass(frozen=True, slots=True)
class RunnerMemory:
    """What a runner measured of its own footprint; ``None`` where it had no such figure."""

    rss_bytes: int
    hwm_bytes: int
    runtime_mb: float | None  # RKLLMPerfStat.memory_usage_mb when reported
    # MemAvailable just before the load minus its lowest reading since, up to the first generation's end:
    # machine-wide (other processes move it), but it sees NPU buffers that VmRSS may miss (runner.memory)
    available_drop_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class RunnerDone:
    """The last item a runner's generation stream yields."""

    finish: Literal["stop", "length", "abort"]
    prompt_tokens: int
    completion_tokens: int
    perf: Perf | None
    memory: RunnerMemory | None
    outputs: RunOutputs | None = None
    stop_sequence: str | None = None


@dataclass(frozen=True, slots=True)
class RunnerGeneration:
    """What the gateway sends a runner for one generation (chat already rendered or still messages)."""

    params: GenerateParams
    messages: tuple[ChatMessage, ...] | None = None  # rendered by the runner with the model's template
    tools: tuple[dict[str, Any], ...] = ()
    stop: tuple[str, ...] = ()
    system_prompt: str | None = None
    handle_state: HandleState | None = None  # applied by the runner before the run
    # run ``params`` as given (the IO API's raw runtime input): what the runtime lacks is refused with
    # Unsupported, not left out as for the HTTP APIs (rkio.runtime.fit)
    exact: bool = False
