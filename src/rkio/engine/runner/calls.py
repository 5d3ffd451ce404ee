"""Runtime calls that need the handle but are not generations (load_lora, get_kv_cache_size,
clear_kv_cache), performed by the runner while its handle is idle.

The KV cache is one client's at a time (``HandleHolds.kv_owner``): a caller that does not own it sees an
empty cache, and clearing it is a no-op, so no call can read or destroy another client's context.
"""

from __future__ import annotations

from typing import Any

from rkio.engine.runner.handle_state import HandleHolds
from rkio.errors import InvalidRequest
from rkio.runtime.base import Feature, LoraAdapter, Runtime, require


def perform(runtime: Runtime, holds: HandleHolds, op: str, args: dict[str, Any], owner: str) -> object:
    """Run ``op`` on ``runtime`` for ``owner``; raises Unsupported / InvalidRequest / RuntimeFailure."""
    if op == "load_lora":
        path, name = args.get("lora_adapter_path"), args.get("lora_adapter_name")
        scale = args.get("scale", 1.0)
        if not isinstance(path, str) or not isinstance(name, str) or not name:
            raise InvalidRequest("load_lora needs lora_adapter_path and lora_adapter_name strings")
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise InvalidRequest("load_lora: scale must be a number")
        runtime.load_lora(LoraAdapter(path=path, name=name, scale=float(scale)))
        return None
    if op == "get_kv_cache_size":
        require(runtime, Feature.KV_CACHE_SIZE)
        sizes = runtime.kv_cache_size()
        return sizes if holds.kv_owner == owner else [0] * len(sizes)
    if op == "clear_kv_cache":
        _clear(runtime, holds, args, owner)
        return None
    raise InvalidRequest(f"unknown runtime call {op!r}")


def _clear(runtime: Runtime, holds: HandleHolds, args: dict[str, Any], owner: str) -> None:
    keep = args.get("keep_system_prompt", False)
    ranges = args.get("ranges")
    if not isinstance(keep, bool | int):
        raise InvalidRequest("clear_kv_cache: keep_system_prompt must be a boolean")
    pairs: list[tuple[int, int]] | None = None
    if ranges is not None:
        if not isinstance(ranges, list) or not all(_is_range(r) for r in ranges):
            raise InvalidRequest("clear_kv_cache: ranges must be [start, end] integer pairs, one per batch")
        pairs = [(int(r[0]), int(r[1])) for r in ranges]
        require(runtime, Feature.CLEAR_KV_CACHE_RANGES)
    require(runtime, Feature.CLEAR_KV_CACHE)
    if holds.kv_owner != owner:
        return  # the cache holds nothing of this caller's: there is nothing of theirs to clear
    runtime.clear_kv_cache(bool(keep), pairs)
    holds.kv_content = None  # whatever is left is no longer a known conversation
    if not keep and pairs is None:
        holds.kv_owner = None


def _is_range(value: object) -> bool:
    return (isinstance(value, list | tuple) and len(value) == 2
            and all(type(v) is int and v >= 0 for v in value))
