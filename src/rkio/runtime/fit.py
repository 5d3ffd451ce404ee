"""Per-run settings a runtime lacks: what is left out of a run instead of refusing it.

A valid request is never refused because a runtime generation lacks a per-run setting (issue 11: every
request with ``temperature`` got a 400 on rkllm 1.2.x). ``fit_to_runtime`` removes what the runtime
cannot take and names it, so the caller can report it. Settings rkio realises itself are removed
without being named: ``max_new_tokens`` (the runner stops the stream), ``enable_thinking`` of a chat
the runner rendered (the chat template carries it) and ``json_schema`` (the API validates the reply
instead, ``rkio.api.structured``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

from rkio.runtime.base import Feature, GenerateParams

# the request settings a report can name, in the order they are listed
SAMPLING, SEED, THINKING, ROLE, HISTORY = "sampling", "seed", "enable_thinking", "role", "keep_history"


@dataclass(frozen=True, slots=True)
class Fitted:
    """``params`` as the runtime can run them, and the request settings that were left out."""

    params: GenerateParams
    not_applied: tuple[str, ...] = ()
    runner_limit: bool = False  # max_new_tokens is enforced by the runner, not the runtime


def fit_to_runtime(params: GenerateParams, features: Collection[str], *, rendered: bool) -> Fitted:
    """``params`` without what ``features`` (``Feature`` values) cannot express.

    ``rendered``: the prompt was rendered from chat messages by rkio, so thinking is in the template.
    """
    has = features.__contains__
    left_out: list[str] = []
    changes: dict[str, object] = {}
    if params.sampling is not None:
        if not has(Feature.PER_RUN_SAMPLING.value):
            changes["sampling"] = None
            left_out.append(SAMPLING)
        elif params.sampling.seed is not None and not has(Feature.SAMPLING_SEED.value):
            changes["sampling"] = replace(params.sampling, seed=None)
        if params.sampling.seed is not None and not has(Feature.SAMPLING_SEED.value):
            left_out.append(SEED)
    runner_limit = params.max_new_tokens is not None and not has(Feature.PER_RUN_MAX_NEW_TOKENS.value)
    if runner_limit:
        changes["max_new_tokens"] = None
    if params.enable_thinking and not has(Feature.ENABLE_THINKING.value):
        changes["enable_thinking"] = False
        if not rendered:
            left_out.append(THINKING)
    if params.json_schema is not None and not has(Feature.JSON_SCHEMA.value):
        changes["json_schema"] = None
    if params.role != "user" and not has(Feature.ROLE.value):
        changes["role"] = "user"
        left_out.append(ROLE)
    if params.keep_history and not has(Feature.KEEP_HISTORY.value):
        changes["keep_history"] = False
        left_out.append(HISTORY)
    fitted = replace(params, **changes) if changes else params  # type: ignore[arg-type]
    return Fitted(fitted, tuple(left_out), runner_limit)
