"""Prompt-cache files for shared prompt prefixes: a long system prompt (or tool list) used by many
conversations is prefilled once, saved with ``save_prompt_cache``, and loaded for every new conversation
that starts with it, so only the rest of its first prompt is prefilled.

A file is keyed by everything that decides its content: the runtime, the model file, the loaded context,
the LoRA adapter and the exact prefix text (rendered by the model's template, so the template is part of
it). Files live in ``<state dir>/prompt-cache/prefix/`` and are pruned by age and total size. rknn-llm
#399 reports that loading a cache did not speed up prefill, so the feature stays off ("auto") until
``rkio probe --kv-reuse`` has measured on the board that it does and left ``confirmed/<runtime name>``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from rkio.engine.types import ModelSpec, PrefixCacheSettings

MIN_PREFIX_TOKENS = 64  # a shorter prefix prefills faster than a file is written and loaded
SUBDIR = "prefix"
CONFIRMED = "confirmed"


def confirmation(directory: Path, runtime_name: str) -> Path:
    """The file ``rkio probe`` leaves when loading a prompt cache skipped the prefill on ``runtime_name``."""
    return directory / CONFIRMED / runtime_name


def enabled(settings: PrefixCacheSettings | None, runtime_name: str) -> bool:
    if settings is None:
        return False
    return settings.mode == "on" or confirmation(Path(settings.directory), runtime_name).is_file()


def cache_key(runtime_name: str, spec: ModelSpec, lora: str | None, prefix: str) -> str:
    parts = (runtime_name, spec.path, str(spec.size_bytes), str(spec.mtime_ns),
             str(spec.load.max_context_len), lora or "", prefix)
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


class PrefixCacheStore:
    """The files of one runner: look one up (refreshing its age), name a new one, prune old ones."""

    def __init__(self, settings: PrefixCacheSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.directory = Path(settings.directory) / SUBDIR
        self._clock = clock

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.cache"

    def lookup(self, key: str) -> str | None:
        """The file for ``key`` when it exists and is young enough; its use counts as fresh."""
        path = self.path(key)
        try:
            age = self._clock() - path.stat().st_mtime
        except OSError:
            return None
        if age > self.settings.max_age_s:
            return None
        with contextlib.suppress(OSError):
            now = self._clock()
            os.utime(path, (now, now))
        return str(path)

    def prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def prune(self) -> None:
        """Drop files older than the age limit, then the least recently used until under the size limit."""
        try:
            entries = [(e.stat().st_mtime, e.stat().st_size, Path(e.path)) for e in os.scandir(self.directory)
                       if e.name.endswith(".cache")]
        except OSError:
            return
        now = self._clock()
        keep = []
        for mtime, size, path in sorted(entries):
            if now - mtime > self.settings.max_age_s:
                path.unlink(missing_ok=True)
            else:
                keep.append((mtime, size, path))
        total = sum(size for _, size, _ in keep)
        for _, size, path in keep:
            if total <= self.settings.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
