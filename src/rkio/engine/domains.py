"""IOMMU domain windows of the RK3588 NPU: pure placement arithmetic.

The NPU sees memory through 16 IOMMU domains of 4 GiB each and rkllm starts a model's allocations in
``base_domain_id``, spilling into the following domains when one is full (rkllm-runtime.md §2.1, §2.2).
We model a model of ``n`` bytes placed at base ``b`` as filling ``k = ceil(n / 4 GiB)`` consecutive
windows: the first ``k - 1`` must be empty (it takes them whole), the last must have room for the rest.
Small models (``k == 1``) may share a window as long as the window's total stays within 4 GiB.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

WINDOW_BYTES = 4 << 30
WINDOWS = 16


def windows_needed(nbytes: int) -> int:
    return max(1, -(-nbytes // WINDOW_BYTES))


def span(base: int, nbytes: int) -> tuple[int, ...]:
    """The windows a model of ``nbytes`` placed at ``base`` occupies."""
    return tuple(range(base, base + windows_needed(nbytes)))


def occupancy(placements: Iterable[tuple[int, int]]) -> list[int]:
    """Bytes used per window, from ``(base, nbytes)`` placements."""
    used = [0] * WINDOWS
    for base, nbytes in placements:
        k = windows_needed(nbytes)
        for i in range(k - 1):
            used[base + i] += WINDOW_BYTES
        used[base + k - 1] += nbytes - (k - 1) * WINDOW_BYTES
    return used


def fits_at(base: int, nbytes: int, used: Sequence[int], reserved: Collection[int]) -> bool:
    k = windows_needed(nbytes)
    if base < 0 or base + k > WINDOWS:
        return False
    windows = range(base, base + k)
    if any(w in reserved for w in windows):
        return False
    if any(used[w] for w in windows[:-1]):
        return False
    rest = nbytes - (k - 1) * WINDOW_BYTES
    return used[base + k - 1] + rest <= WINDOW_BYTES


def place(
    nbytes: int, used: Sequence[int], reserved: Collection[int] = (), pinned: int | None = None
) -> int | None:
    """The lowest base window where ``nbytes`` fits (or ``pinned`` if it fits there), else None."""
    if pinned is not None:
        return pinned if fits_at(pinned, nbytes, used, reserved) else None
    for base in range(WINDOWS):
        if fits_at(base, nbytes, used, reserved):
            return base
    return None
