"""Errors crossing the process boundary: an ``Error`` frame back into the ``rkio.errors`` exception."""

from __future__ import annotations

import re

from rkio import errors
from rkio.engine.runner.frames import Error

# the errors a runner may report; anything else arrives as the caller's default
_KINDS: dict[str, type[errors.RkioError]] = {
    cls.__name__: cls
    for cls in (errors.InvalidRequest, errors.ContextLengthExceeded, errors.RuntimeFailure, errors.LoadFailed,
                errors.InsufficientMemory, errors.PayloadTooLarge)
}


# the runtime refuses an over-long prompt with a generic run error; only its log line says why
_CONTEXT = re.compile(r"exceed.*context|context.*exceed", re.IGNORECASE)


def to_exception(frame: Error, detail: str | None, default: type[errors.RkioError] = errors.RuntimeFailure
                 ) -> errors.RkioError:
    """The exception for ``frame``; ``detail`` (the runtime's last error line) is appended when new."""
    message = frame.message
    if detail and detail not in message:
        message = f"{message}: {detail}"
    if frame.kind == "RuntimeFailure" and detail and _CONTEXT.search(detail):
        return errors.ContextLengthExceeded(f"the prompt does not fit the model's context: {detail}")
    if frame.kind == "Unsupported":
        return errors.Unsupported(frame.feature or message, frame.runtime or "unknown")
    return _KINDS.get(frame.kind, default)(message)
