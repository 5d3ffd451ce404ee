"""Memory admission: pure functions over explicit snapshots (no clocks, no I/O, no logging).

The scheduler describes what is resident (``Resident``) and what it wants to load (``Need``);
``plan_admission`` answers with one of ``Admit`` / ``Evict`` / ``Wait`` / ``Reject``. Rules, in order:

1. The target fits the budget (and, for NPU models, a domain window) next to everything resident: Admit.
   A vision model's RKNN encoder (``encoder_bytes``, part of ``bytes``) must fit in domain 0, where
   librknnrt always allocates (rkllm-runtime.md §2.2, #195, #262), and its LLM is placed at base 1 or above.
2. Otherwise count the runners already stopping as freed, then evict idle models in LRU order (oldest
   ``last_used`` first, then name) until it fits: Evict(victims), or Wait when the stopping ones suffice.
   Never evicted: busy, loading, pinned or leased models, and models with requests queued ahead of
   the target (``demand``).
3. Otherwise, if it would fit once busy or in-demand (but not pinned or leased) models go idle: Wait.
4. Otherwise Reject, naming the bytes needed, the bytes free and what is loaded.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from rkio.engine import domains
from rkio.units import MiB, format_size

ResidentState = Literal["loading", "idle", "busy", "stopping"]

# Estimate used until a model's footprint has been measured once (rkllm-runtime.md §2.3, §2.5): the KV
# cost per token is undocumented; fp16 KV of real models ranges 28 KiB (Qwen2.5-1.5B) to 144 KiB
# (Qwen3-4B) per token, so we charge 64 KiB plus 32 KiB per GiB of model file, which is above both.
KV_BASE_BYTES_PER_TOKEN = 64 << 10
KV_BYTES_PER_TOKEN_PER_GIB = 32 << 10
RUNTIME_BUFFER_BYTES = 256 * MiB  # rkllm's own working buffers, plus 10 % of the file below
ENCODER_DOMAIN = 0  # librknnrt cannot choose an IOMMU domain


@dataclass(frozen=True, slots=True)
class Resident:
    name: str
    bytes: int
    state: ResidentState
    last_used: float
    base_domain: int | None = None  # None for CPU models
    pinned: bool = False
    leases: int = 0
    demand: bool = False  # requests queued for it ahead of the target
    encoder_bytes: int = 0  # of ``bytes``: a vision model's RKNN encoder, which lives in domain 0


@dataclass(frozen=True, slots=True)
class Need:
    name: str
    bytes: int
    npu: bool = True
    pinned_domain: int | None = None
    encoder_bytes: int = 0  # of ``bytes``: a vision model's RKNN encoder, which must fit in domain 0


@dataclass(frozen=True, slots=True)
class Admit:
    base_domain: int | None


@dataclass(frozen=True, slots=True)
class Evict:
    victims: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Wait:
    reason: str


@dataclass(frozen=True, slots=True)
class Reject:
    message: str


Plan = Admit | Evict | Wait | Reject


def kv_bytes_per_token(file_bytes: int) -> int:
    return KV_BASE_BYTES_PER_TOKEN + KV_BYTES_PER_TOKEN_PER_GIB * file_bytes // (1 << 30)


def estimate_footprint(file_bytes: int, max_context_len: int) -> int:
    """Conservative bytes a model needs when loaded, before we have measured it."""
    runtime_buffer = RUNTIME_BUFFER_BYTES + file_bytes // 10
    return file_bytes + kv_bytes_per_token(file_bytes) * max_context_len + runtime_buffer


def derive_budget(configured: int | None, mem_available: int, held: int, reserve: int) -> int:
    """The configured budget, else what is available now plus what our runners already hold, minus reserve."""
    if configured is not None:
        return configured
    return max(0, mem_available + held - reserve)


def evictable(r: Resident) -> bool:
    return r.state == "idle" and not r.pinned and r.leases == 0 and not r.demand


def drainable(r: Resident) -> bool:
    """Will become evictable by itself (finishes its work), unlike pinned or leased models."""
    return r.state in ("idle", "busy", "loading") and not r.pinned and r.leases == 0


def _fit(
    need: Need, residents: Sequence[Resident], freed: Collection[str], budget: int,
    reserved: Collection[int],
) -> tuple[bool, int | None]:
    kept = [r for r in residents if r.name not in freed]
    if sum(r.bytes for r in kept) + need.bytes > budget:
        return False, None
    if not need.npu:
        return True, None
    placed = [(r.base_domain, r.bytes - r.encoder_bytes) for r in kept if r.base_domain is not None]
    placed += [(ENCODER_DOMAIN, r.encoder_bytes) for r in kept
               if r.base_domain is not None and r.encoder_bytes]
    used = domains.occupancy(placed)
    if not need.encoder_bytes:
        base = domains.place(need.bytes, used, reserved, need.pinned_domain)
        return base is not None, base
    if used[ENCODER_DOMAIN] + need.encoder_bytes > domains.WINDOW_BYTES:
        return False, None
    with_encoder = list(used)
    with_encoder[ENCODER_DOMAIN] += need.encoder_bytes
    # the LLM never shares domain 0 with the encoder: #195's encoder failed after the LLM filled it
    base = domains.place(need.bytes - need.encoder_bytes, with_encoder, {*reserved, ENCODER_DOMAIN},
                         need.pinned_domain)
    return base is not None, base


def plan_admission(
    need: Need, residents: Sequence[Resident], budget: int, reserved_domains: Collection[int] = ()
) -> Plan:
    """Decide how ``need`` gets loaded next to ``residents`` within ``budget`` (see module rules)."""
    residents = sorted(residents, key=lambda r: r.name)
    ok, base = _fit(need, residents, (), budget, reserved_domains)
    if ok:  # (1)
        return Admit(base)
    freed = {r.name for r in residents if r.state == "stopping"}
    victims: list[str] = []
    for r in sorted((r for r in residents if evictable(r)), key=lambda r: (r.last_used, r.name)):
        if _fit(need, residents, freed, budget, reserved_domains)[0]:
            break
        freed.add(r.name)
        victims.append(r.name)
    if _fit(need, residents, freed, budget, reserved_domains)[0]:  # (2)
        return Evict(tuple(victims)) if victims else Wait("memory of stopped runners is being released")
    freed |= {r.name for r in residents if drainable(r)}
    if _fit(need, residents, freed, budget, reserved_domains)[0]:  # (3)
        return Wait("waiting for busy models to become idle so they can be evicted")
    return Reject(_rejection(need, residents, budget, reserved_domains))  # (4)


def _rejection(need: Need, residents: Sequence[Resident], budget: int, reserved: Collection[int]) -> str:
    used = sum(r.bytes for r in residents)
    held = [r for r in residents if not drainable(r) and r.state != "stopping"]
    free = budget - used
    loaded = ", ".join(_describe(r) for r in residents) or "nothing"
    if need.bytes > budget:
        return (f"{need.name} needs {format_size(need.bytes)} but the whole memory budget is "
                f"{format_size(budget)}; loaded: {loaded}")
    if sum(r.bytes for r in held) + need.bytes <= budget and need.npu:
        where = f"domain {need.pinned_domain}" if need.pinned_domain is not None else "any IOMMU domain"
        return (f"{need.name} needs {format_size(need.bytes)} of NPU address space but {where} has no "
                f"room (4 GiB windows, reserved: {sorted(reserved) or 'none'}); loaded: {loaded}")
    return (f"{need.name} needs {format_size(need.bytes)} but only {format_size(max(0, free))} of the "
            f"{format_size(budget)} memory budget is free and the rest cannot be evicted; loaded: {loaded}")


def _describe(r: Resident) -> str:
    flags = [f for f, on in (("pinned", r.pinned), ("leased", r.leases > 0), (r.state, r.state != "idle"))
             if on]
    extra = f" ({', '.join(flags)})" if flags else ""
    return f"{r.name} {format_size(r.bytes)}{extra}"
