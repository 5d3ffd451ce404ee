"""Memory probes: MemAvailable from /proc/meminfo, and waiting for a stopped runner's memory to return."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from rkio.units import MiB

MEMINFO = Path("/proc/meminfo")

# A runner's own interpreter and shared libraries are not what we wait for; only memory beyond this
# (weights, KV cache, NPU buffers) is expected back in MemAvailable after the process is reaped.
PROCESS_BASE_BYTES = 256 * MiB
RECOVERY_SHARE = 0.75  # ollama's threshold: most of it back is enough, page cache noise is not
RECOVERY_CAP_S = 5.0
RECOVERY_POLL_S = 0.05


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` as bytes per field."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            scale = 1024 if len(parts) > 1 and parts[1] == "kB" else 1
            out[name.strip()] = int(parts[0]) * scale
    return out


def mem_available(path: Path = MEMINFO) -> int | None:
    """MemAvailable in bytes, or None where the kernel does not report it."""
    try:
        return parse_meminfo(path.read_text()).get("MemAvailable")
    except OSError:
        return None


def expected_release(rss_bytes: int | None) -> int:
    """Bytes we expect back after a runner with ``rss_bytes`` exits."""
    if rss_bytes is None:
        return 0
    return int(max(0, rss_bytes - PROCESS_BASE_BYTES) * RECOVERY_SHARE)


async def wait_for_release(
    probe: Callable[[], int | None], before: int | None, expected: int, *,
    cap: float = RECOVERY_CAP_S, interval: float = RECOVERY_POLL_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> bool:
    """Wait until MemAvailable rose by ``expected`` over ``before`` (sampled before the stop).

    Returns True when it did (or there is nothing to wait for), False when ``cap`` seconds passed first.
    """
    if before is None or expected <= 0:
        return True
    for _ in range(max(1, int(cap / interval))):
        now = probe()
        if now is None or now >= before + expected:
            return True
        await sleep(interval)
    return False
