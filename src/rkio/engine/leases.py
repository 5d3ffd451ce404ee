"""Load parameters of a lease: a client's RKLLMParam overrides applied to a model, and whether two sets of
parameters can share one model instance.

Same model and same parameters share the instance. Parameters that differ need their own init, except
where the runtime can apply the difference per run (sampling, on runtimes with per-request sampling).
``max_context_len`` is never a conflict: the scheduler re-inits to the largest context asked for (grow
only), and a smaller wish fits a larger loaded context. ``base_domain_id`` is a wish the planner decides.
"""

from __future__ import annotations

from dataclasses import fields, replace

from rkio.engine.types import LoadOverrides
from rkio.errors import InvalidRequest
from rkio.runtime.base import Feature, LoadParams, Sampling

_SAMPLING = frozenset(f.name for f in fields(Sampling)) - {"seed"}
_NOT_CONFLICTING = frozenset({"model_path", "max_context_len", "base_domain_id", "is_async", "n_threads"})
MAX_CONTEXT = 1 << 20  # far above any rkllm model; keeps a typo from planning a terabyte of KV cache


def apply_overrides(load: LoadParams, overrides: LoadOverrides | None) -> LoadParams:
    """``load`` with every override that is set; raises InvalidRequest for out-of-range values."""
    if overrides is None:
        return load
    given = {f.name: getattr(overrides, f.name) for f in fields(overrides)
             if getattr(overrides, f.name) is not None}
    _check(given)
    sampling = {k: v for k, v in given.items() if k in _SAMPLING}
    rest = {k: v for k, v in given.items() if k not in _SAMPLING}
    return replace(load, sampling=replace(load.sampling, **sampling), **rest)


def _check(given: dict[str, object]) -> None:
    def positive(name: str, upper: int) -> None:
        value = given.get(name)
        if value is not None and not (isinstance(value, int) and 0 < value <= upper):
            raise InvalidRequest(f"{name} must be between 1 and {upper}, got {value!r}")

    positive("max_context_len", MAX_CONTEXT)
    positive("max_new_tokens", MAX_CONTEXT)
    positive("n_batch", 8)  # rkllm recommends at most 8 parallel batches (rkllm-runtime.md, n_batch)
    mask = given.get("enabled_cpus_mask")
    if mask is not None and not (isinstance(mask, int) and 0 <= mask <= 0xFF):
        raise InvalidRequest(f"enabled_cpus_mask must be a bit mask of CPU0..CPU7, got {mask!r}")
    domain = given.get("base_domain_id")
    if domain is not None and not (isinstance(domain, int) and 0 <= domain < 16):
        raise InvalidRequest(f"base_domain_id must be between 0 and 15, got {domain!r}")
    for name in ("top_p", "temperature", "repeat_penalty"):
        value = given.get(name)
        if value is not None and (not isinstance(value, int | float) or value < 0):
            raise InvalidRequest(f"{name} must be a non-negative number, got {value!r}")


def conflicts(loaded: LoadParams, wanted: LoadParams, features: frozenset[str]) -> list[str]:
    """The names of the parameters in which ``wanted`` cannot share an instance loaded with ``loaded``."""
    per_run_sampling = Feature.PER_RUN_SAMPLING.value in features
    names: list[str] = []
    for f in fields(LoadParams):
        if f.name in _NOT_CONFLICTING:
            continue
        if f.name == "sampling":
            if not per_run_sampling:
                names += [s for s in sorted(_SAMPLING)
                          if getattr(loaded.sampling, s) != getattr(wanted.sampling, s)]
            continue
        if getattr(loaded, f.name) != getattr(wanted, f.name):
            names.append(f.name)
    return names
