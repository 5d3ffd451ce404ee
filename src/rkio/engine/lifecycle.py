"""Pure lifecycle policies: keep-alive resolution, load-failure cooldown, crash quarantine."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

COOLDOWN_FIRST_S = 10.0
COOLDOWN_MAX_S = 300.0
QUARANTINE_CRASHES = 3
QUARANTINE_WINDOW_S = 600.0


def effective_keep_alive(request: float | None, model: float | None, server: float) -> float:
    """Ollama semantics: the request's value, else the model's, else the server's; < 0 = forever."""
    if request is not None:
        return request
    if model is not None:
        return model
    return server


def cooldown_seconds(failures: int) -> float:
    """10 s after the first failure, doubling per consecutive failure, capped at 5 min."""
    if failures <= 0:
        return 0.0
    return min(COOLDOWN_MAX_S, COOLDOWN_FIRST_S * 2.0 ** (failures - 1))


@dataclass(slots=True)
class FailureRecord:
    """Consecutive load failures and recent crashes of one model."""

    failures: int = 0
    until: float = 0.0
    reason: str = ""
    crashes: deque[float] = field(default_factory=deque)

    def load_failed(self, now: float, reason: str) -> float:
        """Record a failure; returns the cooldown in seconds."""
        self.failures += 1
        self.reason = reason
        wait = cooldown_seconds(self.failures)
        self.until = now + wait
        return wait

    def crashed(self, now: float) -> bool:
        """Record a crash; True when the model has now crashed too often and must be quarantined."""
        self.crashes.append(now)
        while self.crashes and self.crashes[0] <= now - QUARANTINE_WINDOW_S:
            self.crashes.popleft()
        return len(self.crashes) >= QUARANTINE_CRASHES

    def cooling(self, now: float) -> float:
        """Seconds of cooldown left (0 when none)."""
        return max(0.0, self.until - now)

    def loaded(self) -> None:
        self.failures = 0
        self.until = 0.0
