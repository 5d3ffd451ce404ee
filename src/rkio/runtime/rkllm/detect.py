"""Finding librkllmrt.so and deciding, with certainty or not at all, which ABI generation it has.

A binding of the wrong generation does not fail cleanly: it crashes the board (rknn-llm #509, #522) or
produces garbage. So detection only answers when the evidence is unambiguous: the exported functions
pin the generation down to a class, and a version string embedded in the library picks inside the class.
Anything else is refused with the environment variable that settles it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from rkio.runtime import library_search
from rkio.runtime.rkllm.elf import NotElf, dynamic_symbols
from rkio.runtime.rkllm.errors import AbiUndetectable, LibraryNotFound, RkllmSetupError
from rkio.runtime.rkllm.layouts import Generation, build_layout
from rkio.runtime.rkllm.prototypes import signatures

log = logging.getLogger(__name__)

LIBRARY_ENV = "RKIO_RKLLM_LIB"
ABI_ENV = "RKIO_RKLLM_ABI"
LIBRARY_NAME = "librkllmrt.so"
SEARCH_DIRS = library_search.SEARCH_DIRS
ABI_CHOICES = ("auto", "1.1", "1.2.0", "1.2.1", "1.3.0", "1.2.1b1")

# released runtime versions and the generation of their header
KNOWN_VERSIONS: dict[str, Generation] = {
    **{f"1.1.{patch}": Generation.V1_1 for patch in range(5)},
    "1.2.0": Generation.V1_2_0,
    "1.2.1b1": Generation.V1_2_1B1,
    **{f"1.2.{patch}": Generation.V1_2_1 for patch in (1, 2, 3)},
    "1.3.0": Generation.V1_3_0,
}
_MARKER = b"rkllm-runtime version"
_INLINE_VERSION = re.compile(rb"rkllm-runtime version[^\0\d]{0,8}v?(\d+\.\d+\.\d+(?:b\d+)?)")
_STANDALONE_VERSION = re.compile(rb"(?<=\0)v?(1\.\d+\.\d+(?:b\d+)?)(?=\0)")
_WINDOW = 4096  # bytes around the log format string searched for a standalone version literal


@dataclass(frozen=True)
class LibraryInfo:
    """What a library file says about itself."""

    path: Path
    generations: frozenset[Generation]  # the generations its exported functions fit
    version: str | None  # the runtime version embedded in it, when it is unambiguous


def find_library() -> Path | None:
    """``$RKIO_RKLLM_LIB`` when set (even if missing: an explicit path never falls back), else the first
    librkllmrt.so in /usr/lib, /usr/local/lib, /usr/lib/aarch64-linux-gnu, ./lib."""
    return library_search.find_library(LIBRARY_ENV, LIBRARY_NAME, SEARCH_DIRS)


def require_library(library: str | os.PathLike[str] | None = None) -> Path:
    """``library`` or ``find_library()``, or a ``LibraryNotFound`` that says where it looked."""
    if library is not None:
        path = Path(library)
        if not path.is_file():
            raise LibraryNotFound(f"rkllm runtime library {path} does not exist")
        return path
    found = find_library()
    if found is not None:
        return found
    explicit = os.environ.get(LIBRARY_ENV)
    if explicit:
        raise LibraryNotFound(f"{LIBRARY_ENV}={explicit} does not name an existing file")
    raise LibraryNotFound(
        f"{LIBRARY_NAME} not found in {', '.join(SEARCH_DIRS)}; set {LIBRARY_ENV} to its path"
    )


@cache
def _function_names(generation: Generation) -> frozenset[str]:
    return frozenset(signatures(build_layout(generation)))


def generations_for_symbols(symbols: frozenset[str]) -> frozenset[Generation]:
    """Generations whose exported function set is exactly the rkllm functions in ``symbols``."""
    every = frozenset().union(*(_function_names(g) for g in Generation))
    present = symbols & every
    return frozenset(g for g in Generation if _function_names(g) == present)


def embedded_version(data: bytes) -> str | None:
    """The runtime version a library carries next to its "rkllm-runtime version" log line, if unambiguous."""
    inline = {m.group(1).decode() for m in _INLINE_VERSION.finditer(data)}
    if inline:
        return inline.pop() if len(inline) == 1 else None
    nearby: set[str] = set()
    start = data.find(_MARKER)
    while start >= 0:
        window = data[max(0, start - _WINDOW) : start + _WINDOW]
        nearby |= {m.group(1).decode() for m in _STANDALONE_VERSION.finditer(window)}
        start = data.find(_MARKER, start + 1)
    return nearby.pop() if len(nearby) == 1 else None


def inspect_library(path: str | os.PathLike[str]) -> LibraryInfo:
    """Read the exported functions and embedded version of ``path`` (without loading it)."""
    path = Path(path)
    try:
        symbols = dynamic_symbols(path)
    except (OSError, NotElf) as exc:
        raise AbiUndetectable(f"cannot read {path}: {exc}") from exc
    return LibraryInfo(path, generations_for_symbols(symbols), embedded_version(path.read_bytes()))


def runtime_version(path: str | os.PathLike[str]) -> str | None:
    """The rkllm runtime version string embedded in the library at ``path``, when there is exactly one."""
    return embedded_version(Path(path).read_bytes())


def choose_generation(info: LibraryInfo) -> Generation:
    """The generation of a library, or ``AbiUndetectable`` explaining what was found and how to override."""
    fits = sorted(info.generations)
    labels = " or ".join(g.label for g in fits) or "no known generation"
    found = f"{info.path}: exported functions fit {labels}; embedded version {info.version or 'not found'}"
    override = f"If you know the runtime's header version, set {ABI_ENV} to one of 1.1, 1.2.0, 1.2.1, 1.3.0."
    if not fits:
        raise AbiUndetectable(f"{found}. It is not an rkllm 1.1+ runtime (1.0.x is unsupported). {override}")
    if info.version is not None:
        generation = KNOWN_VERSIONS.get(info.version)
        if generation is None:
            raise AbiUndetectable(f"{found}. Version {info.version} is not one rkio knows. {override}")
        if generation not in info.generations:
            raise AbiUndetectable(f"{found}. The version contradicts the exported functions. {override}")
        return generation
    if len(fits) == 1 and fits[0] is Generation.V1_1:
        return fits[0]  # no other release exports exactly these functions
    raise AbiUndetectable(f"{found}. That cannot tell {labels} apart. {override}")


def detect_abi(path: str | os.PathLike[str]) -> str:
    """The ABI label ("1.1", "1.2.0", "1.2.1b1", "1.2.1" or "1.3.0") of the library at ``path``.

    Raises ``AbiUndetectable`` unless the library's exported functions and embedded version agree on one.
    """
    return choose_generation(inspect_library(path)).label


def parse_abi(choice: str) -> Generation | None:
    """``None`` for auto, else the generation named by an ABI label or a released runtime version."""
    choice = choice.strip().lower().removeprefix("v")
    if choice in ("", "auto"):
        return None
    if choice in KNOWN_VERSIONS:
        return KNOWN_VERSIONS[choice]
    try:
        return Generation.from_label(choice)
    except ValueError:
        raise RkllmSetupError(
            f"{ABI_ENV}={choice!r} is not valid; use one of {', '.join(ABI_CHOICES)}"
        ) from None


def resolve(library: str | os.PathLike[str] | None, abi: str | None) -> tuple[Path, Generation, str | None]:
    """Library path, generation and embedded version for ``RkllmRuntime(library, abi)``.

    An explicit ABI (argument, else ``$RKIO_RKLLM_ABI``) wins over detection; the version is still read so
    that behaviour differences inside a generation (multi-instance from 1.2.2) are known.
    """
    path = require_library(library)
    forced = parse_abi(abi if abi is not None else os.environ.get(ABI_ENV, "auto"))
    if forced is not None:
        version = runtime_version(path)
        embedded = KNOWN_VERSIONS.get(version) if version else None
        if embedded is not None and embedded is not forced:
            log.warning("%s says it is rkllm runtime %s (ABI %s) but ABI %s was chosen explicitly; "
                        "a wrong ABI crashes the runtime", path, version, embedded.label, forced.label)
        return path, forced, version
    info = inspect_library(path)
    return path, choose_generation(info), info.version
