"""A spinner while the server loads a model or prefills, on terminals only."""

from __future__ import annotations

from typing import Any, TextIO


class Waiting:
    """``with Waiting("loading qwen", sys.stderr) as w: ...; w.stop()`` — silent when not a terminal."""

    def __init__(self, message: str, stream: TextIO) -> None:
        self._status: Any = None
        if hasattr(stream, "isatty") and stream.isatty():
            from rich.console import Console

            self._status = Console(file=stream).status(message, spinner="dots")

    def __enter__(self) -> Waiting:
        if self._status is not None:
            self._status.start()
        return self

    def stop(self) -> None:
        """Remove the spinner (e.g. at the first token), leaving the line clean for the answer."""
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __exit__(self, *exc: object) -> None:
        self.stop()

