"""Errors crossing the process boundary: an ``Error`` frame back into the ``rkio.errors`` exception."""

from __future__ import annotations

from rkio import errors
from rkio.engine.runner.frames import Error

# the errors a runner may report; anything else arrives as the caller's default
_KINDS: dict[str, type[errors.RkioError]] = {
    cls.__name__: cls
    for cls in (errors.InvalidRequest, errors.ContextLengthExceeded, errors.RuntimeFailure, errors.LoadFailed,
                errors.InsufficientMemory, errors.PayloadTooLarge)
}


def to_exception(frame: Error, detail: str | None, default: type[errors.RkioError] = errors.RuntimeFailure
                 ) -> errors.RkioError:
    """The exception for ``frame``; ``detail`` (the runtime's last error line) is appended when new."""
    message = frame.message
    if detail and detail not in message:
        message = f"{message}: {detail}"
    if frame.kind == "Unsupported":
        return errors.Unsupported(frame.feature or message, frame.runtime or "unknown")
    return _KINDS.get(frame.kind, default)(message)
