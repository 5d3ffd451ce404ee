"""Memory readings the probe takes around every step: /proc and, when readable, the rknpu debugfs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RKNPU_DEBUGFS = Path("/sys/kernel/debug/rknpu")
RKNPU_FILES = ("version", "load", "mm")


def _kib_field(text: str, name: str) -> int | None:
    for line in text.splitlines():
        if line.startswith(name + ":"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemAvailable in bytes: the kernel's estimate of what can be allocated without swapping."""
    value = _kib_field(meminfo.read_text(), "MemAvailable")
    if value is None:
        raise RuntimeError(f"{meminfo} has no MemAvailable line")
    return value


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    """VmRSS (resident now) and VmHWM (peak resident) of one process, in bytes."""

    rss_bytes: int
    hwm_bytes: int


def process_memory(pid: int, proc: Path = Path("/proc")) -> ProcessMemory | None:
    """The process's VmRSS/VmHWM, or None when it is gone (or a zombie without memory lines)."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    rss, hwm = _kib_field(text, "VmRSS"), _kib_field(text, "VmHWM")
    if rss is None or hwm is None:
        return None
    return ProcessMemory(rss, hwm)


def rknpu_state(root: Path = RKNPU_DEBUGFS) -> dict[str, str]:
    """The rknpu driver's debugfs files that can be read (needs root and a mounted debugfs).

    ``version`` gives the driver version the runtime checks (0.9.8 is required per the SDK guide),
    ``load`` the per-core utilisation, ``mm`` the driver's memory accounting. Missing files are left out.
    """
    found: dict[str, str] = {}
    for name in RKNPU_FILES:
        try:
            found[name] = (root / name).read_text().strip()
        except OSError:
            continue
    return found
