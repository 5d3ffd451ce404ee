"""Where a vendor runtime library is looked for: an environment variable, else the usual directories."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

SEARCH_DIRS = ("/usr/lib", "/usr/local/lib", "/usr/lib/aarch64-linux-gnu", "./lib")


def find_library(env_var: str, name: str, dirs: Sequence[str] = SEARCH_DIRS) -> Path | None:
    """``$env_var`` when set (even if missing: an explicit path never falls back), else the first ``name``
    in ``dirs``."""
    explicit = os.environ.get(env_var)
    if explicit:
        path = Path(explicit)
        return path if path.is_file() else None
    for directory in dirs:
        candidate = Path(directory) / name
        if candidate.is_file():
            return candidate
    return None
