"""What the runtime applies of a request, told to the client in headers and written to the access log.

A request is never refused for a setting its runtime generation lacks (rkio.runtime.fit); instead the
response says what applied, before the first token (so streams carry it too):

* ``X-Rkio-Sampling``: ``request`` (the request's sampling, per run), ``loaded`` (the model's loaded
  sampling: the request gave none, or the runtime cannot change it per run), ``reinit`` (the model was
  loaded with the request's sampling, model.toml ``sampling = "reinit"``);
* ``X-Rkio-Not-Applied``: the request settings that were left out, comma-separated (e.g. ``sampling``,
  ``seed``, ``enable_thinking``), absent when nothing was.
"""

from __future__ import annotations

from rkio.api.access import RequestRecord
from rkio.engine.run_plan import RunPlan
from rkio.engine.types import Engine, GenerationRequest

SAMPLING_HEADER = "X-Rkio-Sampling"
NOT_APPLIED_HEADER = "X-Rkio-Not-Applied"


def plan_headers(plan: RunPlan) -> dict[str, str]:
    headers: dict[str, str] = {SAMPLING_HEADER: plan.sampling}
    if plan.not_applied:
        headers[NOT_APPLIED_HEADER] = ",".join(plan.not_applied)
    return headers


def report_run(engine: Engine, request: GenerationRequest, record: RequestRecord) -> dict[str, str]:
    """The plan for ``request``, recorded for the access log and metrics; returns the response headers."""
    plan = engine.plan(request)
    record.sampling, record.not_applied = plan.sampling, plan.not_applied
    for setting in plan.not_applied:
        record.metrics.not_applied.inc(request.model, setting)
    return plan_headers(plan)
