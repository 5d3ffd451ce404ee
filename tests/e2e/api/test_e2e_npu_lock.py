"""One engine per board: a second ``rkio serve`` on the same NPU lock is refused at once, naming the owner;
the lock goes with the owner, however it ends."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from live_server import LiveServer, free_port

from rkio.engine.npu_lock import hold_npu_lock


def lock_of(server: LiveServer) -> Path:
    match = re.search(r"holding the NPU lock (\S+)", server.log())
    assert match, server.log()
    return Path(match.group(1))


def second_serve(lock: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rkio", "serve", "--port", str(free_port()),
                           "--models-dir", str(tmp_path), "--npu-lock", str(lock)],
                          capture_output=True, text=True, timeout=30)


def test_a_second_serve_is_refused_naming_the_owner(start_server: Callable[..., LiveServer],
                                                    tmp_path: Path) -> None:
    live = start_server()
    lock = lock_of(live)
    result = second_serve(lock, tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (f"rkio serve: another rkio engine (pid {live.process.pid}) already owns "
                                     f"this machine's NPU (lock file {lock})")
    assert live.stop() == 0, live.log()
    with hold_npu_lock(lock):  # a clean exit released it
        pass


def test_a_killed_servers_lock_is_taken_over(start_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    first = start_server()
    lock = lock_of(first)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    assert lock.read_text().strip() == str(first.process.pid)  # the stale pid is still in the file
    second = start_server("--npu-lock", str(lock))  # the later flag wins over the fixture's own
    assert lock_of(second) == lock
    assert lock.read_text().strip() == str(second.process.pid)
    assert second.stop() == 0, second.log()
