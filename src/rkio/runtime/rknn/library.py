"""Finding and loading librknnrt.so, with every binding checked before it is used.

``RKIO_RKNN_LIB`` names the library (an explicit path never falls back), else the usual system places. The
declared struct sizes are checked against the header's (``layouts.EXPECTED_SIZES``) and, when the library
reports its own (the simulator's ``rknn_sim_layout``), against those. The SDK's API version is checked once a
context exists (``check_sdk_version``): rkio binds the 2.x header, and another major version is refused
rather than guessed at, because a mismatched struct corrupts memory instead of failing.
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from ctypes import POINTER, c_char_p, c_int, c_uint32, c_void_p
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rkio.errors import LoadFailed
from rkio.runtime import library_search
from rkio.runtime.rknn import layouts

LIBRARY_ENV = "RKIO_RKNN_LIB"
LIBRARY_NAME = "librknnrt.so"
SEARCH_DIRS = library_search.SEARCH_DIRS
SUPPORTED_MAJOR = 2
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")

_C = layouts.Context
PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "rknn_init": (c_int, [POINTER(_C), c_void_p, c_uint32, c_uint32, c_void_p]),
    "rknn_destroy": (c_int, [_C]),
    "rknn_query": (c_int, [_C, c_int, c_void_p, c_uint32]),
    "rknn_inputs_set": (c_int, [_C, c_uint32, POINTER(layouts.Input)]),
    "rknn_run": (c_int, [_C, c_void_p]),
    "rknn_outputs_get": (c_int, [_C, c_uint32, POINTER(layouts.Output), c_void_p]),
    "rknn_outputs_release": (c_int, [_C, c_uint32, POINTER(layouts.Output)]),
}


class RknnSetupError(LoadFailed):
    """librknnrt cannot be used as configured (missing, wrong layout, unsupported version)."""


@dataclass(frozen=True)
class RknnLibrary:
    """A loaded librknnrt with every bound function prototyped."""

    path: Path
    cdll: ctypes.CDLL
    simulated: bool

    def fn(self, name: str) -> Any:
        return getattr(self.cdll, name)


def find_library() -> Path | None:
    return library_search.find_library(LIBRARY_ENV, LIBRARY_NAME, SEARCH_DIRS)


def check_layouts(reported: str | None) -> None:
    """Raise RknnSetupError when a declared struct size differs from the header's or the library's."""
    declared = layouts.declared_sizes()
    if declared != layouts.EXPECTED_SIZES:
        raise RknnSetupError(f"rknn struct layouts do not match rknn_api.h: {declared}")
    if reported is None:
        return
    theirs = dict(item.split("=", 1) for item in reported.split())
    for name, size in declared.items():
        if name in theirs and int(theirs[name]) != size:
            raise RknnSetupError(f"librknnrt's {name} is {theirs[name]} bytes, rkio binds {size}")


def check_sdk_version(api_version: str) -> None:
    """Refuse an RKNN SDK whose API major version is not the one whose header rkio binds."""
    match = _VERSION.search(api_version)
    if match is None or int(match.group(1)) != SUPPORTED_MAJOR:
        raise RknnSetupError(f"librknnrt reports API version {api_version!r}; rkio binds the "
                             f"{SUPPORTED_MAJOR}.x rknn_api.h (set {LIBRARY_ENV} to a "
                             f"{SUPPORTED_MAJOR}.x library)")


_lock = threading.Lock()
_loaded: dict[Path, RknnLibrary] = {}


def load_library(path: str | os.PathLike[str] | None = None) -> RknnLibrary:
    """Load (once per process) and check librknnrt at ``path`` or where ``find_library`` finds it."""
    found = Path(path) if path is not None else find_library()
    if found is None or not found.is_file():
        where = os.environ.get(LIBRARY_ENV) or ", ".join(SEARCH_DIRS)
        raise RknnSetupError(f"{LIBRARY_NAME} not found ({where}); set {LIBRARY_ENV} to its path")
    with _lock:
        if found in _loaded:
            return _loaded[found]
        try:
            cdll = ctypes.CDLL(str(found))
        except OSError as exc:
            raise RknnSetupError(f"cannot load {found}: {exc}") from exc
        missing = [name for name in PROTOTYPES if not hasattr(cdll, name)]
        if missing:
            raise RknnSetupError(f"{found} lacks {', '.join(missing)}: not a librknnrt")
        for name, (restype, argtypes) in PROTOTYPES.items():
            function = getattr(cdll, name)
            function.restype, function.argtypes = restype, argtypes
        simulated = hasattr(cdll, "rknn_sim_layout")
        reported = None
        if simulated:
            cdll.rknn_sim_layout.restype, cdll.rknn_sim_layout.argtypes = c_char_p, []
            reported = cdll.rknn_sim_layout().decode()
        check_layouts(reported)
        library = RknnLibrary(found, cdll, simulated)
        _loaded[found] = library
        return library
