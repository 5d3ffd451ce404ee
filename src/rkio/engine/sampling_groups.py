"""Sampling re-init (model.toml ``sampling = "reinit"``): requests run on a model loaded with their sampling.

For runtimes without per-run sampling (rkllm before 1.3.0) a model can opt in to being re-initialized
for a request's sampling instead of running it with the loaded one. The policy follows the num_ctx
re-init (docs/architecture.md §5):

* a re-init only happens when the model is idle, never under a running generation;
* grouped: while the queue head waits for a re-init, waiters behind it that the loaded sampling serves
  go first, and a load takes the first sampling wish in the queue, so one (re-)init serves every queued
  request that wants it;
* bounded: a head is overtaken at most ``MAX_OVERTAKES`` times, then its re-init happens (so it never
  starves), and a model re-inits only when its head wants a sampling other than the loaded one.

A waiter's ``sampling`` is its wish (None: any sampling will do; only reinit-policy requests that give
sampling carry one). A model's loaded sampling is the one its runner was started with (``entry.load``):
a load uses the spec ``load_spec`` returns. The seed never counts: rkllm has no seed parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import islice

from rkio.engine.ledger import ModelEntry, Waiter
from rkio.engine.types import ModelSpec
from rkio.runtime.base import Sampling

MAX_OVERTAKES = 4


def _same(a: Sampling, b: Sampling) -> bool:
    return replace(a, seed=None) == replace(b, seed=None)


def fits(waiter: Waiter, entry: ModelEntry) -> bool:
    """``waiter`` can run on ``entry`` as loaded: its context and its sampling (if it wants one)."""
    if waiter.kind != "generate" or waiter.need_ctx > entry.ctx:
        return False
    loaded = entry.load.sampling if entry.load is not None else entry.spec.load.sampling
    return waiter.sampling is None or _same(waiter.sampling, loaded)


def grantable(queue: Sequence[Waiter], entry: ModelEntry) -> Waiter | None:
    """The waiter to grant next on the idle model ``entry``: the head when it fits; when the head only
    waits for a sampling re-init, the oldest waiter that fits, until the head was overtaken enough."""
    if not queue:
        return None
    head = queue[0]
    if fits(head, entry):
        return head
    if head.kind != "generate" or head.need_ctx > entry.ctx or head.overtaken >= MAX_OVERTAKES:
        return None
    return next((w for w in islice(queue, 1, None) if fits(w, entry)), None)


def granted(queue: Sequence[Waiter], waiter: Waiter) -> None:
    """Record that ``waiter`` was granted (it may have overtaken the head)."""
    if queue and queue[0] is not waiter:
        queue[0].overtaken += 1


def reinit_for(queue: Sequence[Waiter], entry: ModelEntry) -> Sampling | None:
    """The sampling to re-init the idle model with, or None: only when its head wants another sampling
    than the loaded one and no waiter may be served first."""
    if not queue or queue[0].sampling is None or fits(queue[0], entry):
        return None
    if queue[0].kind != "generate" or queue[0].need_ctx > entry.ctx:
        return None  # a context re-init (or a load request) comes first; it takes load_spec's sampling
    return queue[0].sampling if grantable(queue, entry) is None else None


def load_spec(queue: Sequence[Waiter]) -> ModelSpec:
    """The spec to (re-)load a model with for ``queue``: the head's, with the first sampling wish."""
    spec = queue[0].spec
    wish = next((w.sampling for w in queue if w.sampling is not None), None)
    return spec if wish is None else replace(spec, load=replace(spec.load, sampling=wish))
