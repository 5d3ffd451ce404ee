"""``rkio doctor``: what this machine offers rkio, what would be served, and what to fix.

Everything is read from files (``/proc``, ``/sys``, ``/dev`` under an injectable ``root``), the models
directory and the runtime library, so the checks are testable with a fake tree. Each problem comes
with the command or setting that fixes it.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from rkio.config import Settings
from rkio.engine import domains
from rkio.engine.planner import derive_budget, estimate_footprint
from rkio.engine.types import ModelSpec
from rkio.runtime.select import npu_evidence, runtime_decision, soc_compatible
from rkio.units import format_size

REQUIRED_DRIVER = (0, 9, 8)  # rkllm-runtime.md §2.5: the docs require RKNPU driver 0.9.8
MIN_NOFILE = 65536  # one dma-buf fd per NPU buffer (rkllm-runtime.md §2.4); vendor servers use 102400
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True, slots=True)
class Problem:
    severity: Literal["error", "warning"]
    problem: str
    fix: str


@dataclass(frozen=True, slots=True)
class Environment:
    """The inputs doctor reads, injectable for tests."""

    root: Path = Path("/")
    find_library: Callable[[], Path | None] | None = None
    detect_abi: Callable[[Path], str] | None = None
    nofile: tuple[int, int] | None = None
    llama_cpp_version: Callable[[], str | None] | None = None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def meminfo(root: Path) -> dict[str, int]:
    """/proc/meminfo in bytes."""
    values: dict[str, int] = {}
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def driver_version(root: Path) -> tuple[str | None, tuple[int, ...] | None]:
    """(raw text, parsed version) of /sys/kernel/debug/rknpu/version; (None, None) when unreadable."""
    raw = _read(root / "sys/kernel/debug/rknpu/version")
    if raw is None:
        return None, None
    match = _VERSION.search(raw)
    return raw.strip(), tuple(int(g) for g in match.groups()) if match else None


def _llama_cpp_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return None


def _runtime_section(settings: Settings, env: Environment) -> dict[str, Any]:
    if env.find_library is not None:
        decision = runtime_decision(settings.runtime, root=env.root, find_library=env.find_library)
    else:
        decision = runtime_decision(settings.runtime, root=env.root)
    abi: str | None = None
    abi_error: str | None = None
    if decision.library is not None:
        if env.detect_abi is not None:
            detect = env.detect_abi
        else:
            from rkio.runtime.rkllm import detect_abi as detect
        try:
            abi = detect(decision.library)
        except Exception as exc:  # any refusal is a finding to report, not a doctor crash
            abi_error = str(exc)
    return {
        "selected": decision.kind, "reason": decision.reason,
        "library": str(decision.library) if decision.library else None, "abi": abi, "abi_error": abi_error,
        "llama_cpp": (env.llama_cpp_version or _llama_cpp_version)(),
    }


def _memory_section(settings: Settings, env: Environment) -> dict[str, Any]:
    info = meminfo(env.root)
    available = info.get("MemAvailable", 0)
    return {
        "total_bytes": info.get("MemTotal"), "available_bytes": available,
        "reserve_bytes": settings.memory_reserve,
        "budget_bytes": derive_budget(settings.memory_budget, available, 0, settings.memory_reserve),
        "budget_source": "configured" if settings.memory_budget is not None else "MemAvailable - reserve",
    }


def _models_section(models: Sequence[ModelSpec], budget: int, reserved: Sequence[int]) -> dict[str, Any]:
    """Each model's estimated footprint, and which set (smallest first) fits the budget together."""
    rows: list[dict[str, Any]] = []
    for spec in sorted(models, key=lambda m: m.name):
        footprint = estimate_footprint(spec.size_bytes, spec.load.max_context_len)
        rows.append({"name": spec.name, "runtime": spec.runtime, "path": spec.path,
                     "size_bytes": spec.size_bytes, "max_context_len": spec.load.max_context_len,
                     "footprint_bytes": footprint, "fits_alone": footprint <= budget})
    together: list[dict[str, Any]] = []
    placements: list[tuple[int, int]] = []
    total = 0
    for row in sorted(rows, key=lambda r: (r["footprint_bytes"], r["name"])):
        size = int(row["footprint_bytes"])
        if total + size > budget:
            continue
        base = None
        if row["runtime"] == "rkllm":
            base = domains.place(size, domains.occupancy(placements), reserved)
            if base is None:
                continue
            placements.append((base, size))
        total += size
        windows = list(domains.span(base, size)) if base is not None else []
        together.append({"name": row["name"], "bytes": size, "base_domain": base, "domains": windows})
    return {"models": rows, "fit_together": together, "fit_together_bytes": total}


def find_problems(report: dict[str, Any], settings: Settings) -> list[Problem]:
    """Everything in ``report`` that would stop or hurt serving, each with its fix."""
    problems: list[Problem] = []
    runtime, npu, memory, models = report["runtime"], report["npu"], report["memory"], report["models"]
    on_npu = runtime["selected"] == "rkllm"
    if npu["present"] and runtime["library"] is None:
        problems.append(Problem(
            "warning", "this board has an RKNPU but no librkllmrt.so, so .rkllm models cannot run",
            "install librkllmrt.so from airockchip/rknn-llm (rkllm-runtime/Linux/librkllm_api/aarch64) "
            "into /usr/lib, or set RKIO_RKLLM_LIB to its path"))
    if runtime["abi_error"]:
        problems.append(Problem("error", f"cannot tell the runtime library's ABI: {runtime['abi_error']}",
                                "set RKIO_RKLLM_ABI to the runtime version you installed (e.g. 1.2.1)"))
    version = npu["driver_version"]
    if on_npu and version is not None and tuple(version) < REQUIRED_DRIVER:
        have = ".".join(map(str, version))
        problems.append(Problem(
            "error", f"RKNPU driver {have} is older than 0.9.8, which rkllm requires (older drivers fail "
            "matmul or NPU allocations)",
            "update the board's kernel to one with rknpu driver 0.9.8 or later"))
    if on_npu and npu["driver_raw"] is None:
        problems.append(Problem("warning", "cannot read /sys/kernel/debug/rknpu/version (debugfs needs root)",
                                "run `sudo rkio doctor` once to check the driver version"))
    soft, hard = report["limits"]["nofile_soft"], report["limits"]["nofile_hard"]
    if on_npu and min(soft, hard) < MIN_NOFILE:
        problems.append(Problem(
            "warning", f"open-file limit is {soft} (hard {hard}); the runtime needs one fd per NPU buffer "
            "and fails with 'Too many open files' (rkllm-runtime.md §2.4)",
            "run `ulimit -n 102400` before `rkio serve`, or set LimitNOFILE=102400 in its systemd unit"))
    rows = models["models"]
    if not rows:
        problems.append(Problem(
            "error", f"no models in {settings.models_dir}",
            "put a model there (<name>/model.rkllm, <name>/model.gguf or <name>.gguf), or run `make run` "
            "to install the default Gemma 3 270M"))
    if any(r["runtime"] == "llamacpp" for r in rows) and runtime["llama_cpp"] is None:
        problems.append(Problem("error", "GGUF models need llama-cpp-python, which is not installed",
                                "pip install 'rkio[cpu]'"))
    if any(r["runtime"] == "rkllm" for r in rows) and runtime["library"] is None:
        problems.append(Problem("warning", ".rkllm models are present but the NPU runtime is not; "
                                "loading them will fail",
                                "serve them on an RK3588/RK3576 board with librkllmrt.so"))
    budget = memory["budget_bytes"]
    for row in rows:
        if not row["fits_alone"]:
            problems.append(Problem(
                "error", f"{row['name']} needs about {format_size(row['footprint_bytes'])} "
                f"(file plus KV cache for {row['max_context_len']} tokens) but the memory budget is "
                f"{format_size(budget)}",
                f"lower max_context_len in {settings.models_dir / row['name']}/model.toml, free memory, or "
                "set memory_budget (--memory-budget) if the estimate is too cautious"))
    return problems


def collect(settings: Settings, models: Sequence[ModelSpec],
            env: Environment | None = None) -> dict[str, Any]:
    """The full report doctor prints (``--json`` prints exactly this)."""
    env = env or Environment()
    compatible = soc_compatible(env.root)
    raw, version = driver_version(env.root)
    evidence = npu_evidence(env.root)
    soft, hard = env.nofile or resource.getrlimit(resource.RLIMIT_NOFILE)
    memory = _memory_section(settings, env)
    report: dict[str, Any] = {
        "platform": {"machine": platform.machine(), "kernel": platform.release(),
                     "python": platform.python_version(), "compatible": compatible,
                     "soc": next((s for s in ("rk3588", "rk3576") if any(s in c for c in compatible)), None)},
        "npu": {"present": evidence is not None, "evidence": evidence, "driver_raw": raw,
                "driver_version": list(version) if version else None},
        "runtime": _runtime_section(settings, env),
        "memory": memory,
        "limits": {"nofile_soft": soft, "nofile_hard": hard},
        "models_dir": str(settings.models_dir),
        "models": _models_section(models, memory["budget_bytes"], settings.reserved_domains),
    }
    from rkio.cli.service_check import check_service  # imports the service command, which is heavier

    service, findings = check_service(env.root)
    report["service"] = service
    problems = [*find_problems(report, settings), *(Problem(*f) for f in findings)]
    report["problems"] = [asdict(p) for p in problems]
    return report


def render(report: dict[str, Any], out: TextIO) -> None:
    """Human-readable report: rich on a terminal, plain lines otherwise."""
    lines: list[tuple[str, str]] = []
    plat, npu, rt, mem = report["platform"], report["npu"], report["runtime"], report["memory"]
    lines.append(("platform", f"{plat['machine']}, Linux {plat['kernel']}, Python {plat['python']}"
                  + (f", SoC {plat['soc']}" if plat["soc"] else "")))
    lines.append(("npu", npu["evidence"] or "none found"))
    lines.append(("rknpu driver", npu["driver_raw"] or "unknown"))
    lines.append(("runtime", f"{rt['selected']} ({rt['reason']})"))
    lines.append(("library", f"{rt['library']} ABI {rt['abi'] or '?'}" if rt["library"] else "none"))
    lines.append(("llama.cpp", rt["llama_cpp"] or "not installed"))
    total = format_size(mem["total_bytes"]) if mem["total_bytes"] else "?"
    lines.append(("memory", f"{total} total, {format_size(mem['available_bytes'])} available, budget "
                  f"{format_size(mem['budget_bytes'])} ({mem['budget_source']})"))
    limits = report["limits"]
    lines.append(("open files", f"{limits['nofile_soft']} (hard {limits['nofile_hard']})"))
    lines.append(("models dir", report["models_dir"]))
    for row in report["models"]["models"]:
        lines.append((f"  {row['name']}", f"{row['runtime']}, {format_size(row['size_bytes'])} file, "
                      f"~{format_size(row['footprint_bytes'])} loaded at {row['max_context_len']} tokens"))
    plan = report["models"]["fit_together"]
    names = ", ".join(p["name"] + (f" (domains {p['domains']})" if p["domains"] else "") for p in plan)
    lines.append(("fit together", names or "-"))
    service = report.get("service")
    lines.append(("service", f"{service['unit']}: {service['exec']} as {service['user']}" if service
                  else "not installed (sudo rkio install-service)"))
    width = max(len(k) for k, _ in lines)
    text = "".join(f"{k.ljust(width)}  {v}\n" for k, v in lines)
    problems = report["problems"]
    text += "\n" + ("".join(f"{p['severity']}: {p['problem']}\n  fix: {p['fix']}\n" for p in problems)
                    if problems else "no problems found\n")
    if hasattr(out, "isatty") and out.isatty():
        from rich.console import Console

        Console(file=out, highlight=False).print(text, end="", markup=False)
    else:
        out.write(text)


def _registry_models(settings: Settings) -> list[ModelSpec]:
    if not settings.models_dir.is_dir():
        return []
    from rkio.engine.registry import ModelRegistry

    return ModelRegistry(settings.models_dir).list()


def cmd_doctor(args: argparse.Namespace, out: TextIO = sys.stdout, env: Environment | None = None) -> int:
    overrides = {"models_dir": args.models_dir, "runtime": args.runtime, "memory_budget": args.memory_budget}
    settings = Settings.load(overrides=overrides)
    report = collect(settings, _registry_models(settings), env)
    if args.json:
        out.write(json.dumps(report, indent=2) + "\n")
    else:
        render(report, out)
    return 1 if any(p["severity"] == "error" for p in report["problems"]) else 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("doctor", help="check this machine, the NPU runtime and the models")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--models-dir", help="models directory (default $RKIO_MODELS_DIR or ~/.rkio/models)")
    parser.add_argument("--runtime", choices=("auto", "rkllm", "llamacpp"), help="backend to check for")
    parser.add_argument("--memory-budget", help="memory budget to check against (e.g. 6GiB)")
    parser.set_defaults(func=cmd_doctor)
