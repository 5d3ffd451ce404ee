"""The runner's OS process as the gateway sees it: its process group, its merged output, its exit.

``RunnerProcess`` speaks the frame protocol with the runner; this is the part that only knows a process:
signalling the whole group (a runtime's helper threads and forks go with it), draining what it printed
(the runtime's last ``E ...`` line names most failures), and describing how it ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Literal

from rkio.engine.runner.messages import RunnerExit
from rkio.engine.runner.output import RunnerOutput

Phase = Literal["load", "generation", "idle", "stop"]
TERM_GRACE_S = 2.0  # after SIGTERM, before SIGKILL; also the bound on draining the output after an exit


class ChildProcess:
    """One started runner process (its own session: ``pid`` is its process group too)."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.pid: int = proc.pid
        self.output = RunnerOutput(name)
        self._proc = proc
        self._output_task = asyncio.ensure_future(self._read_output())

    @property
    def running(self) -> bool:
        return self._proc.returncode is None

    def signal_group(self, sig: signal.Signals) -> None:
        if self.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)

    async def exit_code(self) -> int:
        """Wait for the process to exit; negative codes are signals."""
        return await self._proc.wait()

    async def drain_output(self) -> None:
        """Let the output reader take in the last lines (bounded: a grandchild may hold the pipe open)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._output_task), TERM_GRACE_S)

    def exit(self, code: int, during: Phase) -> RunnerExit:
        """How it ended: ``code`` from ``exit_code``, ``during`` what the runner was doing then."""
        signum = -code if code < 0 else None
        return RunnerExit(returncode=None if signum else code, signal=signum, during=during,
                          last_error=self.output.exit_detail(failed=signum is None and code != 0))

    async def _read_output(self) -> None:
        assert self._proc.stdout is not None
        await self.output.run(self._proc.stdout)
