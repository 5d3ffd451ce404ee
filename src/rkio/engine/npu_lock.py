"""One engine per board: a machine-wide lock taken before anything loads a runtime.

Two engines on one board would each plan the NPU's memory and IOMMU domains as if they were alone, and
their co-loads are exactly what crashes the vendor runtime. The lock is ``fcntl.flock`` on a file holding the
owner's pid: the kernel releases it when the owner dies however it dies, so a lock file left by a dead
process is simply taken over, and the pid in it only serves the message a second engine prints.

Default path: ``/run/lock/rkio-npu.lock`` (tmpfs, meant for lock files, writable by every user on Debian and
Ubuntu), else ``/var/lock``, else the temporary directory. Override with ``--npu-lock`` / ``RKIO_NPU_LOCK``,
e.g. for tests that simulate several boards on one machine; every engine of a board must use the same path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rkio.errors import NpuBusy

LOCK_NAME = "rkio-npu.lock"
SYSTEM_DIRS = (Path("/run/lock"), Path("/var/lock"))


def default_lock_path() -> Path:
    """The first writable system lock directory's ``rkio-npu.lock``, else one in the temporary directory."""
    for directory in SYSTEM_DIRS:
        if directory.is_dir() and os.access(directory, os.W_OK | os.X_OK):
            return directory / LOCK_NAME
    return Path(tempfile.gettempdir()) / LOCK_NAME


def _open(path: Path) -> tuple[int, bool]:
    """The lock file's descriptor and whether it is writable (a file another user created may only be
    readable: flock works on it all the same, only the pid cannot be recorded)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except PermissionError:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), False
    with contextlib.suppress(OSError):  # let other users' engines open it too (umask narrowed the mode)
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o666)
    return fd, True


def _recorded_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


@contextlib.contextmanager
def hold_npu_lock(path: Path | None = None) -> Iterator[Path]:
    """Hold the machine's NPU lock for the ``with`` block; raises ``NpuBusy`` at once if a live process
    holds it. Yields the lock file's path."""
    path = path or default_lock_path()
    fd, writable = _open(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise NpuBusy(path, _recorded_pid(fd)) from None
        if writable:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            if writable:
                os.ftruncate(fd, 0)  # still locked: nobody reads a half-cleared file
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
