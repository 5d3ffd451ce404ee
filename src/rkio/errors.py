"""The one error hierarchy of rkio.

Every error a client can see is an ``RkioError``; each protocol (OpenAI, Ollama, JSON-RPC) maps it to its
own wire format in exactly one place (``rkio.api.errors``). ``status`` is the HTTP status, ``kind`` a stable
machine-readable name, ``retry_after`` (seconds) becomes a ``Retry-After`` header where set.

    RkioError
    ├── InvalidRequest            400  malformed or out-of-range input
    │   ├── ContextLengthExceeded 400  prompt + max_tokens do not fit the model's context
    │   └── Unsupported           400  the runtime generation lacks the feature ("not supported by runtime X")
    ├── Unauthorized              401
    ├── ModelNotFound             404  no such model in the models directory (or an invalid name)
    ├── PayloadTooLarge           413
    ├── OutputInvalid             422  a reply still fails the requested JSON schema after the retries
    ├── Busy                      429  queue full; carries retry_after
    ├── Cancelled                 499  the client went away (never sent, only logged)
    ├── InternalError             500  a bug in rkio (the log has the traceback, the client a generic text)
    ├── RuntimeFailure            500  the runtime returned an error for this request
    ├── RunnerCrashed             502  the runner process died (signal, exit, OOM-kill)
    ├── InsufficientMemory        503  the budget cannot hold the model even after evicting idle ones
    ├── LoadFailed                503  the runtime refused the model; cooldown in retry_after
    ├── ModelQuarantined          503  the model crashed its runner repeatedly
    ├── ShuttingDown              503
    ├── QueueTimeout              503  waited longer than queue_timeout
    └── GenerationTimeout         504  first-token or inter-token watchdog fired

    ConfigError (a ValueError, never sent to a client): a setting's value is invalid; names its origin
    NpuBusy (never sent to a client): another engine holds this machine's NPU lock
"""

from __future__ import annotations

from pathlib import Path


class RkioError(Exception):
    """Base class: an error with a client-facing message, HTTP status and optional retry hint."""

    status: int = 500
    kind: str = "server_error"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidRequest(RkioError):
    status = 400
    kind = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    kind = "context_length_exceeded"


class Unsupported(InvalidRequest):
    kind = "unsupported"

    def __init__(self, feature: str, runtime: str) -> None:
        super().__init__(f"{feature} is not supported by runtime {runtime}")
        self.feature = feature
        self.runtime = runtime


class Unauthorized(RkioError):
    status = 401
    kind = "authentication_error"


class ModelNotFound(RkioError):
    status = 404
    kind = "model_not_found"


class PayloadTooLarge(RkioError):
    status = 413
    kind = "payload_too_large"


class OutputInvalid(RkioError):
    """Structured output that could only be validated (no constrained decoding) failed every attempt.

    422, not 5xx: clients retry 5xx by themselves, and the same request would most likely fail again.
    """

    status = 422
    kind = "output_validation_failed"


class Busy(RkioError):
    status = 429
    kind = "rate_limit_exceeded"


class Cancelled(RkioError):
    status = 499
    kind = "cancelled"


class InternalError(RkioError):
    """A bug in rkio: the client gets this generic message, the log gets the traceback."""

    status = 500
    kind = "internal_error"


class RuntimeFailure(RkioError):
    status = 500
    kind = "runtime_error"


class RunnerCrashed(RkioError):
    status = 502
    kind = "runner_crashed"


class InsufficientMemory(RkioError):
    status = 503
    kind = "insufficient_memory"


class LoadFailed(RkioError):
    status = 503
    kind = "load_failed"


class ModelQuarantined(RkioError):
    status = 503
    kind = "model_quarantined"


class ShuttingDown(RkioError):
    status = 503
    kind = "shutting_down"


class QueueTimeout(RkioError):
    status = 503
    kind = "queue_timeout"


class GenerationTimeout(RkioError):
    status = 504
    kind = "generation_timeout"


class ConfigError(ValueError):
    """A bad setting (flag, RKIO_* variable, TOML key); the message names where the value came from."""


class NpuBusy(Exception):
    """Another live process holds the machine's NPU lock; ``holder`` is its pid if the lock file names one."""

    def __init__(self, path: Path, holder: int | None) -> None:
        who = f"pid {holder}" if holder is not None else "pid unknown"
        super().__init__(f"another rkio engine ({who}) already owns this machine's NPU (lock file {path})")
        self.path = path
        self.holder = holder
