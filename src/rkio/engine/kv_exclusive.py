"""The KV exclusivity rule: a lease that keeps its history holds its model instance alone.

After a lease's run with ``keep_history=True`` the handle's KV cache holds that lease's conversation. Any
other run on the instance would have to clear it (the runner clears the KV cache when its owner changes),
so every other request on the model (other leases, HTTP) waits in the queue, with its normal queue
deadline, until the owner releases the cache: a run with ``keep_history=False``, a ``clear_kv_cache``
call, the lease's end, or the runner's end. The owner's own requests overtake the waiting ones.
"""

from __future__ import annotations

from collections.abc import Iterable

from rkio.engine.ledger import Waiter


class KvExclusivity:
    """model -> the lease whose history its KV cache holds. Pure bookkeeping, driven by the scheduler."""

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}

    def grantable(self, model: str, queue: Iterable[Waiter]) -> Waiter | None:
        """The waiter that may run next on ``model``: the queue head, or the owner's first generation."""
        owner = self.owners.get(model)
        if owner is None:
            return next(iter(queue), None)
        return next((w for w in queue if w.lease == owner and w.kind == "generate"), None)

    def run_ended(self, model: str, lease: str | None, keep_history: bool | None, ok: bool) -> None:
        """A granted run (or runtime call) of ``lease`` ended; ``keep_history`` None leaves the KV as is."""
        if lease is None or keep_history is None:
            return
        owner = self.owners.get(model)
        if keep_history:
            # a failed run still may have written the owner's partial turn; a newcomer only owns on success
            if ok or owner == lease:
                self.owners[model] = lease
        elif owner == lease:
            del self.owners[model]

    def lease_ended(self, lease: str) -> None:
        for model in [m for m, owner in self.owners.items() if owner == lease]:
            del self.owners[model]

    def model_gone(self, model: str) -> None:
        """The runner stopped or died: its KV cache is gone with it."""
        self.owners.pop(model, None)
