"""``rkio probe``: the board experiment kit (co-loading, domains, output integrity, memory)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rkio.cli.npu_claim import claim_npu
from rkio.config import Settings
from rkio.probe.learned import import_report, save_footprints
from rkio.probe.measure import rknpu_state
from rkio.probe.plan import PairMode, ProbeConfig, ProbeModel
from rkio.probe.report import build_report, summary, write_report
from rkio.probe.run import Gauge, Prober, host_gauge
from rkio.probe.simulated import (
    FLAVOURS,
    NPU_MEMORY_MODES,
    OVERCOMMIT_MODES,
    SimulatedGauge,
    sim_environment,
    sim_library,
    sim_models,
    write_sim_model,
)
from rkio.units import GiB, parse_size

MODES = {"same": PairMode.SAME_DOMAIN, "distinct": PairMode.DISTINCT_DOMAINS, "one": PairMode.ONE_PROCESS}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "probe", help="measure what this board can co-load (each load in its own child process)",
        description="Load the given models alone (smallest first), then in pairs: two processes with the "
                    "same base_domain_id, two with different ones, and two handles in one process. "
                    "Compares greedy replies with each model's solo reply, measures memory at every step, "
                    "stops a series at its first failure and never loads past MemAvailable minus --margin.")
    p.add_argument("models", nargs="*", type=Path, help=".rkllm files to test")
    p.add_argument("--ctx", type=int, default=512, help="max_context_len for every load (default 512)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--prompt", default=ProbeConfig.__dataclass_fields__["prompt"].default)
    p.add_argument("--margin", default="1GiB", help="RAM always left free (default 1GiB)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per step before a child is killed")
    p.add_argument("--modes", default="same,distinct,one",
                   help="pair modes to run: same, distinct, one (comma separated)")
    p.add_argument("--no-pairs", action="store_true", help="only the solo ladder")
    p.add_argument("--library", help="librkllmrt.so to use (default RKIO_RKLLM_LIB, then the usual places)")
    p.add_argument("--abi", help="force the rkllm ABI generation (1.1.4, 1.2.0, 1.2.1, 1.3.0)")
    p.add_argument("--save-footprints", action="store_true",
                   help="record the measured solo footprints in rkio's learned-footprint store (state_dir)")
    p.add_argument("--import-footprints", type=Path, metavar="PROBE_JSON",
                   help="only record the footprints of an earlier report (e.g. one made on the board)")
    p.add_argument("--state-dir", type=Path, help="rkio state directory (default: the server's setting)")
    p.add_argument("--npu-lock", type=Path, metavar="FILE",
                   help="the NPU lock a server holds (default: the server's setting); a probe on the board "
                        "refuses to run while a server owns the NPU")
    p.add_argument("--kv-reuse", action="store_true",
                   help="instead of the memory series: check that a chat continuing from the KV cache "
                        "replies exactly as a fresh prefill (greedy), and the prefill it saves")
    p.add_argument("--out", type=Path,
                   help="directory for probe.json and probe.md (default ./rkio-probe-TIME)")
    sim = p.add_argument_group("simulator (reproduces the analysis' experiments without a board)")
    sim.add_argument("--simulate", choices=FLAVOURS, metavar="FLAVOUR",
                     help=f"run against sim/ built as FLAVOUR ({', '.join(FLAVOURS)})")
    sim.add_argument("--sim-models", default="1G,1.5G,3G",
                     help="sizes of the sparse simulated models (default 1G,1.5G,3G)")
    sim.add_argument("--sim-ram", default="16GiB", help="RAM of the simulated board (default 16GiB)")
    sim.add_argument("--sim-overcommit", choices=OVERCOMMIT_MODES,
                     help="what the simulator does on a RAM/domain overcommit (default: the flavour's)")
    sim.add_argument("--sim-npu-memory", choices=NPU_MEMORY_MODES,
                     help="ledger (default): memory_usage_mb includes the NPU buffers; dma: they are held "
                          "outside the process's RSS (really allocated: use small --sim-models)")
    p.set_defaults(func=run)


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else Settings.load().state_dir


def run(args: argparse.Namespace) -> int:
    if args.import_footprints:
        count = import_report(args.import_footprints, _state_dir(args))
        print(f"recorded {count} footprint(s) from {args.import_footprints} in {_state_dir(args)}")
        return 0
    try:
        modes = tuple(MODES[m.strip()] for m in args.modes.split(",") if m.strip())
    except KeyError as exc:
        print(f"rkio probe: unknown mode {exc.args[0]!r} (same, distinct, one)", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        # a probe on the real NPU loads runtimes: never beside a server; the simulator needs no lock
        lock = None if args.simulate else args.npu_lock or Settings.load().npu_lock
        if not args.simulate and claim_npu(stack, lock, "rkio probe") is None:
            return 1
        return _probe(args, modes)


def _probe(args: argparse.Namespace, modes: tuple[PairMode, ...]) -> int:
    margin = parse_size(args.margin)
    env: dict[str, str] | None = None
    gauge: Gauge = host_gauge
    environment: dict[str, Any] = {}
    paths: list[Path] = list(args.models)
    work = Path(tempfile.mkdtemp(prefix="rkio-probe-"))
    if args.simulate:
        ram = parse_size(args.sim_ram)
        library = sim_library(args.simulate)
        if not paths:
            sizes = [parse_size(s.strip()) for s in args.sim_models.split(",") if s.strip()]
            paths = sim_models(work / "models", sizes)
        env = sim_environment(library, work / "sim-state", ram, args.sim_overcommit,
                              npu_memory=args.sim_npu_memory)
        gauge = SimulatedGauge(ram, work / "sim-state")
        environment["simulated"] = (f"flavour {args.simulate}, RAM {ram / GiB:g} GiB, overcommit "
                                    f"{args.sim_overcommit or 'flavour default'}, NPU memory "
                                    f"{args.sim_npu_memory or 'ledger'}")
    if not paths:
        print("rkio probe: give model files, or --simulate FLAVOUR", file=sys.stderr)
        return 2
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"rkio probe: not a file: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.kv_reuse:
        return _kv_reuse(paths, args, env)
    config = ProbeConfig(models=tuple(ProbeModel.from_path(p) for p in paths), max_context_len=args.ctx,
                         max_new_tokens=args.max_new_tokens, prompt=args.prompt, margin_bytes=margin,
                         step_timeout=args.timeout, pair_modes=modes, pairs=not args.no_pairs,
                         library=args.library, abi=args.abi, env=env)
    npu = rknpu_state()
    environment.update({f"rknpu_{k}": v for k, v in npu.items()})
    prober = Prober(config, gauge=gauge, log=lambda line: print(f"  {line}", file=sys.stderr))
    prober.run()
    runtimes = {s.detail for solo in prober.solos for s in solo.steps
                if s.action == "load" and s.outcome == "ok"}
    environment["runtime"] = ", ".join(sorted(runtimes))
    report = build_report(config, prober.solos, prober.pairs, prober.stopped, environment)
    out = args.out or Path(f"rkio-probe-{time.strftime('%Y%m%d-%H%M%S')}")
    write_report(report, out / "probe.json")
    text = summary(report)
    (out / "probe.md").write_text(text)
    print(text)
    if args.save_footprints:
        count = save_footprints(report["footprints"], _state_dir(args))
        print(f"recorded {count} footprint(s) in {_state_dir(args)}")
    print(f"report: {out / 'probe.json'} (send this file back), summary: {out / 'probe.md'}")
    return 0


def _kv_reuse(paths: list[Path], args: argparse.Namespace, env: dict[str, str] | None) -> int:
    """``--kv-reuse``: the reuse check on each model; exit status 1 unless reuse was confirmed on each
    (replies are allowed 256 tokens at least: a reply cut by the limit is never reused)."""
    import asyncio

    from rkio.engine.calls import prompt_cache_dir
    from rkio.engine.runner.prefix_cache import confirmation
    from rkio.probe import kv_reuse_check

    base = dict(env if env is not None else os.environ)
    if args.library:
        base["RKIO_RKLLM_LIB"] = args.library
    ok = True
    for path in paths:
        if args.simulate:
            path = write_sim_model(path.with_name(f"{path.stem}-ctx.rkllm"), path.stat().st_size,
                                   {"context_reply": 1})
        spec = kv_reuse_check.probe_spec(path, max_context_len=max(args.ctx, 2048),
                                         max_new_tokens=max(args.max_new_tokens, 256), abi=args.abi)
        results = asyncio.run(kv_reuse_check.check(spec, env=base, load_timeout=args.timeout))
        print(f"{path.name}:\n{kv_reuse_check.summary(results)}")
        ok = ok and kv_reuse_check.confirmed(results)
        with tempfile.TemporaryDirectory() as tmp:
            prefix = asyncio.run(kv_reuse_check.check_prefix_cache(spec, Path(tmp), env=base,
                                                                   load_timeout=args.timeout))
        print(kv_reuse_check.prefix_summary(prefix))
        if prefix.identical and prefix.speeds_up and not args.simulate:
            # rkio serve's prompt_caches = "auto" turns them on for this runtime from now on
            mark = confirmation(prompt_cache_dir(_state_dir(args)), prefix.runtime_name)
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.write_text(f"{kv_reuse_check.prefix_summary(prefix)}\nmodel: {path}\n")
            print(f"recorded in {mark}: rkio serve uses prompt caches for shared prefixes on this runtime")
    return 0 if ok else 1
