"""What a request gets from the runtime that serves it: whose sampling the run uses, and what is left out.

rkllm before 1.3.0 has no per-run sampling; 1.1 and 1.2.0 lack ``enable_thinking`` and ``role``; rkllm
has no sampling seed. Such a request still runs (``rkio.runtime.fit``), and this plan says what it got,
so the API can show it (``X-Rkio-Sampling`` / ``X-Rkio-Not-Applied``, the access log) before the first
token. The runner strips the same settings with the same function, so the plan and the run agree.

The runtime's features are predicted in the gateway the way the runner finds them: the same library
search and ABI detection over the same environment (runners inherit it), without loading the library.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal

from rkio.engine.runner.messages import RunnerGeneration
from rkio.engine.types import ModelSpec
from rkio.errors import RkioError
from rkio.runtime.base import Feature, GenerateParams
from rkio.runtime.fit import SAMPLING, fit_to_runtime

IMAGES = "images"
SEPARATE_IMAGES = "separate images"  # several images go in as one before rkllm 1.2.1b1

SamplingSource = Literal["request", "loaded", "reinit"]
"""``request``: applied per run; ``loaded``: the model's loaded sampling applies (the request gave none,
or the runtime cannot take it per run); ``reinit``: the model runs with the request's sampling because it
was (re-)loaded with it (``sampling = "reinit"`` in model.toml)."""


@dataclass(frozen=True, slots=True)
class RunPlan:
    sampling: SamplingSource
    not_applied: tuple[str, ...] = ()  # request settings the runtime cannot apply (rkio.runtime.fit names)
    runtime: str | None = None  # the runtime generation expected to serve it, e.g. "rkllm-1.2.1"

    @property
    def reinit(self) -> bool:
        """The scheduler must serve this request from a model loaded with its sampling."""
        return self.sampling == "reinit"


def plan_run(spec: ModelSpec, params: GenerateParams, *, rendered: bool,
             features: frozenset[str] | None, runtime: str | None = None) -> RunPlan:
    """The plan for running ``params`` (as ``runner_generation`` builds them) on a runtime with ``features``
    (``Feature`` values; None when unknown: then nothing optional is assumed)."""
    fitted = fit_to_runtime(params, features or frozenset(), rendered=rendered)
    left_out = fitted.not_applied
    source: SamplingSource
    if params.sampling is None:
        source = "loaded"
    elif SAMPLING not in left_out:
        source = "request"
    elif spec.sampling_policy == "reinit":
        source = "reinit"
        left_out = tuple(name for name in left_out if name != SAMPLING)
    else:
        source = "loaded"
    return RunPlan(source, left_out, runtime)


def runtime_features(spec: ModelSpec) -> tuple[str | None, frozenset[str] | None]:
    """(runtime name, feature values) of the runtime a runner for ``spec`` will create, or Nones when that
    cannot be told without loading it (no library found: the load will fail and say why)."""
    if spec.runtime == "llamacpp":
        from rkio.runtime.llamacpp import FEATURES

        return "llamacpp", frozenset(f.value for f in FEATURES)
    from rkio.runtime.rkllm.detect import ABI_ENV, LIBRARY_ENV

    return _rkllm(spec.abi, os.environ.get(LIBRARY_ENV), os.environ.get(ABI_ENV))


@lru_cache(maxsize=32)
def _rkllm(abi: str | None, library_env: str | None, abi_env: str | None) -> tuple[str | None,
                                                                                  frozenset[str] | None]:
    # the environment values are part of the key: resolve() reads them
    from rkio.runtime.rkllm.detect import resolve
    from rkio.runtime.rkllm.features import features_of

    try:
        _, generation, version = resolve(None, abi)
    except (RkioError, OSError):
        return None, None
    return f"rkllm-{generation.label}", frozenset(f.value for f in features_of(generation, version))


def plan_generation(spec: ModelSpec, gen: RunnerGeneration, loaded: frozenset[str] = frozenset()) -> RunPlan:
    """The plan for what ``session.runner_generation`` made of a request on ``spec``; ``loaded``: the
    features its loaded runner reported, when there is one (else they are predicted)."""
    runtime, features = runtime_features(spec)
    return plan_for(spec, gen, loaded or features, runtime)


def plan_for(spec: ModelSpec, gen: RunnerGeneration, features: frozenset[str] | None,
             runtime: str | None = None) -> RunPlan:
    """``plan_generation`` with the runtime's features given."""
    plan = plan_run(spec, gen.params, rendered=gen.messages is not None, features=features, runtime=runtime)
    n_images = sum(len(message.images) for message in gen.messages or ())
    if spec.vision is None and n_images:
        # a text model ignores images visibly: the text runs alone, and the reply says images were left out
        plan = replace(plan, not_applied=(*plan.not_applied, IMAGES))
    elif n_images > 1 and features is not None and Feature.MULTIPLE_IMAGES.value not in features:
        plan = replace(plan, not_applied=(*plan.not_applied, SEPARATE_IMAGES))
    return plan


def per_request_sampling(spec: ModelSpec, features: frozenset[str] | None = None) -> bool | None:
    """Whether the runtime serving ``spec`` applies a request's sampling per run (None: unknown);
    ``features`` are the loaded runner's when known, else they are predicted."""
    if features is None:
        _, features = runtime_features(spec)
    return None if features is None else Feature.PER_RUN_SAMPLING.value in features
