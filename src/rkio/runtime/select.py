"""Which backend ``--runtime auto`` means on this machine: the NPU when it can work, else the CPU.

The NPU needs both halves: the vendor library (librkllmrt.so) and an RKNPU device. Either alone is
common (a library copied to a PC, a board without the runtime installed) and must not pick rkllm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rkio.runtime.base import RuntimeKind

NPU_SOCS = ("rk3588", "rk3576")
RUNTIME_CHOICES = ("auto", "rkllm", "llamacpp")


@dataclass(frozen=True, slots=True)
class RuntimeDecision:
    kind: RuntimeKind
    reason: str
    library: Path | None = None


def soc_compatible(root: Path = Path("/")) -> list[str]:
    """The device tree's ``compatible`` strings (e.g. ``rockchip,rk3588``); empty off ARM boards."""
    try:
        raw = (root / "proc/device-tree/compatible").read_bytes()
    except OSError:
        return []
    return [part.decode("ascii", "replace") for part in raw.split(b"\0") if part]


def npu_soc(root: Path = Path("/")) -> str | None:
    """``rk3588`` / ``rk3576`` when the device tree names one of them."""
    for entry in soc_compatible(root):
        for soc in NPU_SOCS:
            if soc in entry.lower():
                return soc
    return None


def npu_evidence(root: Path = Path("/")) -> str | None:
    """Why we believe an RKNPU is present, or None."""
    devices = sorted((root / "dev").glob("rknpu*")) if (root / "dev").is_dir() else []
    if devices:
        return f"device {devices[0]}"
    debug = root / "sys/kernel/debug/rknpu"
    try:
        if debug.exists():
            return f"driver {debug}"
    except OSError:  # debugfs without permission
        pass
    soc = npu_soc(root)
    return f"SoC {soc}" if soc else None


def _default_library() -> Path | None:
    from rkio.runtime.rkllm import find_library

    return find_library()


def runtime_decision(requested: str = "auto", *, root: Path = Path("/"),
                     find_library: Callable[[], Path | None] = _default_library) -> RuntimeDecision:
    """Resolve ``requested`` (auto | rkllm | llamacpp) to a backend, with the reason for doctor."""
    if requested not in RUNTIME_CHOICES:
        raise ValueError(f"unknown runtime {requested!r} (choose from {', '.join(RUNTIME_CHOICES)})")
    if requested == "llamacpp":
        return RuntimeDecision("llamacpp", "requested")
    library = find_library()
    if requested == "rkllm":
        return RuntimeDecision("rkllm", "requested", library)
    evidence = npu_evidence(root)
    if library is not None and evidence is not None:
        return RuntimeDecision("rkllm", f"{library} and {evidence}", library)
    if library is None:
        missing = "no librkllmrt.so (set RKIO_RKLLM_LIB or install it in /usr/lib)"
    else:
        missing = f"{library} found but no RKNPU device (/dev/rknpu*, RK3588/RK3576 device tree)"
    return RuntimeDecision("llamacpp", f"CPU: {missing}", library)


def choose_runtime(requested: str = "auto", *, root: Path = Path("/"),
                   find_library: Callable[[], Path | None] = _default_library) -> RuntimeKind:
    """``rkllm`` when the runtime library and an RKNPU are both present (or requested), else ``llamacpp``."""
    return runtime_decision(requested, root=root, find_library=find_library).kind


def installed_runtimes(find_library: Callable[[], Path | None] = _default_library) -> frozenset[RuntimeKind]:
    """The runtime kinds this machine can run: rkllm when librkllmrt.so is found, llamacpp when
    llama-cpp-python is importable (what ``--runtime auto`` serves models with)."""
    import importlib.util

    kinds: set[RuntimeKind] = set()
    if find_library() is not None:
        kinds.add("rkllm")
    if importlib.util.find_spec("llama_cpp") is not None:
        kinds.add("llamacpp")
    return frozenset(kinds)
