"""Runner processes: one OS process per loaded model, owning exactly one runtime handle.

``RunnerProcess`` is the gateway's side; ``python -m rkio.engine.runner`` is the process itself
(``RunnerService``); ``frames`` is the typed protocol between them, ``messages`` the types it carries
that the session sees too.
"""

from __future__ import annotations

from rkio.engine.runner.client import RunnerProcess

__all__ = ["RunnerProcess"]
