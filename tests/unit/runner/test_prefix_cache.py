"""Prefix prompt-cache files: keys, lookup refreshing the age, pruning by age and total size."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from runner_fakes import make_spec

from rkio.engine.runner.prefix_cache import PrefixCacheStore, cache_key, confirmation, enabled
from rkio.engine.types import PrefixCacheSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def store(tmp_path: Path, clock: Clock, max_bytes: int = 100, max_age: float = 60.0) -> PrefixCacheStore:
    return PrefixCacheStore(PrefixCacheSettings(str(tmp_path), "on", max_bytes, max_age), clock)


def write(s: PrefixCacheStore, key: str, size: int, mtime: float) -> Path:
    s.prepare()
    path = s.path(key)
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))
    return path


def test_the_key_covers_runtime_model_context_adapter_and_prefix() -> None:
    spec = make_spec()
    base = cache_key("rkllm-1.2.1", spec, None, "system")
    variants = [cache_key("rkllm-1.2.3", spec, None, "system"),
                cache_key("rkllm-1.2.1", spec, "ada", "system"),
                cache_key("rkllm-1.2.1", spec, None, "system "),
                cache_key("rkllm-1.2.1", replace(spec, mtime_ns=1), None, "system"),
                cache_key("rkllm-1.2.1", replace(spec, load=replace(spec.load, max_context_len=8192)), None,
                          "system")]
    assert len({base, *variants}) == 6


def test_lookup_finds_young_files_and_refreshes_them(tmp_path: Path) -> None:
    clock = Clock()
    s = store(tmp_path, clock)
    assert s.lookup("a") is None
    write(s, "a", 10, clock.now - 50)
    assert s.lookup("a") == str(s.path("a"))
    clock.now += 50  # 100 s after writing, but looked up 50 s ago
    assert s.lookup("a") is not None
    clock.now += 61
    assert s.lookup("a") is None


def test_prune_drops_old_files_then_the_least_recently_used(tmp_path: Path) -> None:
    clock = Clock()
    s = store(tmp_path, clock, max_bytes=100)
    old = write(s, "old", 10, clock.now - 100)
    lru = write(s, "lru", 60, clock.now - 30)
    recent = write(s, "recent", 60, clock.now - 10)
    s.prune()
    assert not old.exists() and not lru.exists() and recent.exists()


def test_auto_mode_waits_for_the_probe(tmp_path: Path) -> None:
    settings = PrefixCacheSettings(str(tmp_path), "auto", 1, 1.0)
    assert not enabled(None, "rkllm-1.2.1") and not enabled(settings, "rkllm-1.2.1")
    assert enabled(replace(settings, mode="on"), "rkllm-1.2.1")
    confirmation(tmp_path, "rkllm-1.2.1").parent.mkdir()
    confirmation(tmp_path, "rkllm-1.2.1").write_text("ok")
    assert enabled(settings, "rkllm-1.2.1") and not enabled(settings, "rkllm-1.3.0")
