"""The parent's side of one probe child: send a request, wait for its reply, notice death or a hang."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rkio.probe.measure import ProcessMemory, process_memory
from rkio.probe.outcomes import Outcome, exit_outcome, signal_name

_EOF = b"<eof>"  # distinct object: compared by identity


@dataclass(frozen=True, slots=True)
class Answer:
    """A reply, or why there is none: the child died (``outcome`` crashed/killed) or hung."""

    reply: dict[str, Any] | None
    outcome: Outcome | None = None
    detail: str = ""


class ChildProcess:
    """One ``python -m rkio.probe.child`` process in its own session (so a kill takes its threads too)."""

    def __init__(self, label: str, env: Mapping[str, str] | None = None) -> None:
        self.label = label
        # Held for the child's lifetime and closed in close(); a with-block cannot span that.
        self._stderr = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "rkio.probe.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
        self._buffer = b""
        self._stderr_mark = 0  # where the current request's stderr output starts

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def memory(self) -> ProcessMemory | None:
        return process_memory(self._proc.pid) if self.alive() else None

    def runtime_errors(self) -> str | None:
        """The runtime's "E ..." lines of the latest request, joined (why it refused or crashed).

        The specific cause usually comes first and a generic "rkllm init failed" last, so keep the last few.
        """
        self._stderr.seek(self._stderr_mark)
        lines = self._stderr.read().decode("utf-8", "replace").splitlines()
        errors = [line.strip() for line in lines if line.lstrip().startswith("E ")]
        return " / ".join(errors[-3:]) if errors else None

    def request(self, payload: dict[str, Any], timeout: float) -> Answer:
        """Send one request; the answer, or the outcome that replaced it (crashed, killed, hung)."""
        assert self._proc.stdin is not None
        self._stderr_mark = self._stderr.seek(0, os.SEEK_END)
        try:
            self._proc.stdin.write((json.dumps(payload) + "\n").encode())
            self._proc.stdin.flush()
        except BrokenPipeError:
            return self._gone()
        line = self._read_line(timeout)
        if line is _EOF:
            return self._gone()
        if line is None:
            self.kill()
            return Answer(None, Outcome.HUNG, f"no reply within {timeout:g}s; child killed")
        return Answer(json.loads(line))

    def _read_line(self, timeout: float) -> bytes | None:
        """One reply line; ``None`` on timeout, ``_EOF`` when the child closed its end (it is dying)."""
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return _EOF
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _gone(self) -> Answer:
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
            return Answer(None, Outcome.HUNG, "closed its output but did not exit; child killed")
        outcome = exit_outcome(code) or Outcome.CRASHED
        detail = signal_name(code)
        error = self.runtime_errors()
        return Answer(None, outcome, f"{detail}: {error}" if error else detail)

    def kill(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()

    def close(self, timeout: float = 10.0) -> None:
        """Ask the child to destroy its handles and exit; kill it if it does not within ``timeout``."""
        if self.alive():
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(b'{"op": "exit"}\n')
                self._proc.stdin.close()
                self._proc.wait(timeout=timeout)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.kill()
        self._stderr.close()
