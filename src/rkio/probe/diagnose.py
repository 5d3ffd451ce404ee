"""From pair results to findings: compare the same pair across co-residency modes.

A failure alone says little; which *mode* fails says why. The rules:
- domain problem: fails (or corrupts) only when both share a base_domain_id, works with different ones,
  and together they exceed one 4 GiB IOMMU domain (rkllm-runtime.md §2.1, §2.2; rknn-llm #437);
- multi-handle breakage: two handles in one process fail while two processes with the same domains
  work (runtimes before 1.2.2, rknn-llm #367/#383);
- collateral: loading the second model took the first one's process down (in-process segfault, or the
  OOM killer choosing the first because it is the largest process);
- RAM limit: the pair fails in every mode it was tried in, by refusal or kill.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum

from rkio.probe.outcomes import Outcome
from rkio.probe.plan import DOMAIN_BYTES, PairMode, PairResult
from rkio.units import format_size


class Finding(StrEnum):
    DOMAIN_PROBLEM = "domain problem"
    MULTI_HANDLE = "multi-handle breakage"
    COLLATERAL = "second load took down the first"
    RAM_LIMIT = "pair does not fit"
    UNEXPLAINED = "failure without a matching rule"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    finding: Finding
    first: str
    second: str
    evidence: str


def _describe(pair: PairResult) -> str:
    return f"{pair.mode}: {pair.outcome}"


def diagnose(pairs: list[PairResult]) -> list[Diagnosis]:
    """Findings for every pair that failed in at least one mode, in the order the pairs were run."""
    by_pair: dict[tuple[str, str], dict[PairMode, PairResult]] = defaultdict(dict)
    for pair in pairs:
        by_pair[(pair.first.name, pair.second.name)][pair.mode] = pair
    found: list[Diagnosis] = []
    for (first, second), modes in by_pair.items():
        failed = {mode: pair for mode, pair in modes.items() if pair.failed}
        if not failed:
            continue
        explained = False
        same = modes.get(PairMode.SAME_DOMAIN)
        distinct = modes.get(PairMode.DISTINCT_DOMAINS)
        one = modes.get(PairMode.ONE_PROCESS)
        if (same is not None and same.failed and distinct is not None and not distinct.failed
                and same.combined_bytes > DOMAIN_BYTES):
            found.append(Diagnosis(Finding.DOMAIN_PROBLEM, first, second,
                                   f"{_describe(same)}; {_describe(distinct)}; together "
                                   f"{format_size(same.combined_bytes)} > one 4 GiB domain"))
            explained = True
        if one is not None and one.failed and distinct is not None and not distinct.failed:
            found.append(Diagnosis(Finding.MULTI_HANDLE, first, second,
                                   f"{_describe(one)}; {_describe(distinct)}"))
            explained = True
        for pair in failed.values():
            if not pair.first_survived_second_load:
                found.append(Diagnosis(Finding.COLLATERAL, first, second,
                                       f"{pair.mode}: {first} was gone after {second} loaded "
                                       f"({_first_fate(pair)})"))
        resource_failures = {Outcome.REFUSED, Outcome.KILLED}
        if (distinct is not None and distinct.failed and not explained
                and all(p.failed and p.outcome in resource_failures | {Outcome.CRASHED}
                        for p in modes.values())):
            found.append(Diagnosis(Finding.RAM_LIMIT, first, second,
                                   "; ".join(_describe(p) for p in modes.values())
                                   + f"; together {format_size(distinct.combined_bytes)}"))
            explained = True
        if not explained and not any(d.first == first and d.second == second for d in found):
            evidence = "; ".join(_describe(p) for p in failed.values())
            if same is not None and same.failed and distinct is None and same.combined_bytes > DOMAIN_BYTES:
                evidence += (f"; together {format_size(same.combined_bytes)} > one 4 GiB domain: "
                             "add the 'distinct' mode to tell a domain problem from a RAM limit")
            found.append(Diagnosis(Finding.UNEXPLAINED, first, second, evidence))
    return found


def _first_fate(pair: PairResult) -> str:
    for step in pair.steps:
        if step.model == pair.first.name and step.action == "generate":
            return f"{step.outcome}, {step.detail}" if step.detail else str(step.outcome)
    return "no step recorded"
