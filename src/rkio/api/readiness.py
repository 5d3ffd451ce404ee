"""What this board can serve right now, and whether it should get traffic: the contract with a router.

A router in front of several boards (LiteLLM, nginx) needs two answers from each: which models it can run
(``/v1/models``) and whether to send it requests at all (``/ready``). A model can be served when its runtime
is installed here (``librkllmrt.so`` for ``.rkllm``, llama-cpp-python for ``.gguf``), its file is not larger
than the memory budget (then no eviction could ever make room) and it is not quarantined. The board is
ready when at least one model can be served and it is not shutting down.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from rkio.engine.types import Engine, ModelSpec, RuntimeKind


@dataclass(frozen=True, slots=True)
class Verdict:
    ready: bool
    reason: str  # why not ready ("" when ready)
    servable: int  # models that can be served
    loaded: int  # models resident now


class Readiness:
    """``runtimes`` are the runtime kinds installed on this machine (None: do not filter, e.g. in tests whose
    engine is a fake); ``draining`` is set once a shutdown signal arrived."""

    def __init__(self, engine: Engine, runtimes: Collection[RuntimeKind] | None = None) -> None:
        self.engine = engine
        self.runtimes = frozenset(runtimes) if runtimes is not None else None
        self.draining = False

    def servable(self) -> list[ModelSpec]:
        """The models this board can serve, sorted by name (what ``/v1/models`` lists)."""
        status = self.engine.status()
        quarantined = set(status.quarantined)
        return [spec for spec in self.engine.models()
                if spec.name not in quarantined and (self.runtimes is None or spec.runtime in self.runtimes)
                and spec.size_bytes <= status.budget_bytes]

    def servable_ids(self) -> list[tuple[str, ModelSpec]]:
        """The model ids clients may ask for (LoRA variants ``base:adapter`` too) of the servable models."""
        names = {spec.name for spec in self.servable()}
        return [(id_, spec) for id_, spec in self.engine.model_ids() if spec.name in names]

    def verdict(self) -> Verdict:
        """Raises whatever the engine raises when it cannot report (the caller turns that into 503)."""
        loaded = len(self.engine.status().loaded)
        if self.draining:
            return Verdict(False, "the server is shutting down", 0, loaded)
        specs = self.engine.models()
        servable = self.servable()
        if servable:
            return Verdict(True, "", len(servable), loaded)
        if not specs:
            reason = "no models in the models directory"
        elif self.runtimes is not None and not any(s.runtime in self.runtimes for s in specs):
            kinds = ", ".join(sorted({s.runtime for s in specs}))
            reason = (f"no runtime installed for the models here ({kinds}): .rkllm needs librkllmrt.so "
                      "(RKIO_RKLLM_LIB), .gguf needs llama-cpp-python")
        elif all(s.size_bytes > self.engine.status().budget_bytes for s in specs):
            reason = "no model fits the memory budget (--memory-budget)"
        else:
            reason = "every model is quarantined"
        return Verdict(False, reason, 0, loaded)
