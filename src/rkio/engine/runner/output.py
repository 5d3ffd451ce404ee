"""The gateway's reader of a runner's stdout+stderr: forwards lines to logging, keeps the runtime's errors.

The runtime prints its errors as lines such as ``E rkllm: failed to malloc npu memory``; the last one is
what a user needs when a load fails or a runner dies. Before each Error frame the runner writes a sync line
(``rkio-runner: sync N``) so the gateway can tell which error lines belong to that failure.
"""

from __future__ import annotations

import asyncio
import logging
import re

log = logging.getLogger("rkio.runner")

_SYNC = re.compile(r"^rkio-runner: sync (\d+)$")
_ERROR = re.compile(r"^E\b")


class RunnerOutput:
    """Consumes one runner's output stream until EOF (``run``)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.last_error: str | None = None  # last "E ..." line ever
        self.last_line: str | None = None  # last line of any kind (a Python traceback's last line...)
        self.marker = 0
        self.marker_error: str | None = None  # the last E line before sync line ``marker``
        self.eof = False
        self._recent_error: str | None = None
        self._changed = asyncio.Event()

    async def run(self, stream: asyncio.StreamReader) -> None:
        pending = b""
        try:
            while chunk := await stream.read(1 << 16):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for raw in lines:
                    self.line(raw.decode("utf-8", "replace").rstrip("\r"))
            if pending:
                self.line(pending.decode("utf-8", "replace"))
        finally:
            self.eof = True
            self._changed.set()

    def line(self, text: str) -> None:
        sync = _SYNC.match(text)
        if sync:
            self.marker = int(sync.group(1))
            self.marker_error, self._recent_error = self._recent_error, None
            self._changed.set()
            self._changed = asyncio.Event()
            return
        if not text.strip():
            return
        self.last_line = text.strip()
        if _ERROR.match(text):
            self.last_error = self._recent_error = text.strip()
            log.warning("%s: %s", self.label, text)
        else:
            log.info("%s: %s", self.label, text)

    async def error_at(self, marker: int, wait_s: float = 2.0) -> str | None:
        """The runtime's last error line before sync line ``marker`` (waits for the line to be read)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while self.marker < marker and not self.eof:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return self._recent_error
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return self._recent_error
        return self.marker_error if self.marker == marker else self._recent_error

    def exit_detail(self, failed: bool) -> str | None:
        """What to add to a crash message: the last E line, or for a failed exit the last line at all."""
        if self.last_error is not None:
            return self.last_error
        return self.last_line if failed else None
