"""A pure-Python stand-in for children on a board, for testing the probe's orchestration without processes.

It follows the simulator's rules in miniature: footprint = file size, placed in 4 GiB domains from its
base domain on (a large model spills into the next ones); an overcommit (RAM or domain) does what
``overcommit`` says; several handles in one process print commas when ``multi_handle_broken``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rkio.probe.measure import ProcessMemory
from rkio.probe.outcomes import Outcome
from rkio.probe.session import Answer
from rkio.units import GiB


@dataclass
class FakeBoard:
    ram: int = 16 * GiB
    overcommit: str = "fail"
    multi_handle_broken: bool = False
    children: list[FakeChild] = field(default_factory=list)
    loads: int = 0

    def spawn(self, label: str) -> FakeChild:
        child = FakeChild(self, label)
        self.children.append(child)
        return child

    def resident(self) -> list[tuple[FakeChild, str, int, int]]:
        return [(c, slot, size, dom) for c in self.children if c.returncode is None
                for slot, (_, size, dom) in c.handles.items()]

    def domain_use(self, extra: tuple[int, int] | None = None) -> dict[int, int]:
        used: dict[int, int] = {}
        placements = [(size, dom) for _, _, size, dom in self.resident()] + ([extra] if extra else [])
        for size, dom in placements:
            left, d = size, dom
            while left > 0:
                chunk = min(left, 4 * GiB)
                used[d] = used.get(d, 0) + chunk
                left, d = left - chunk, d + 1
        return used

    def gauge(self, _resident: int) -> int:
        return self.ram - sum(size for _, _, size, _ in self.resident())


class FakeChild:
    def __init__(self, board: FakeBoard, label: str) -> None:
        self.board, self.label = board, label
        self.handles: dict[str, tuple[str, int, int]] = {}  # slot -> (path, size, domain)
        self.returncode: int | None = None
        self.garbage = False
        self.refused = False

    def alive(self) -> bool:
        return self.returncode is None

    def memory(self) -> ProcessMemory | None:
        if not self.alive():
            return None
        total = sum(size for _, size, _ in self.handles.values())
        return ProcessMemory(total, total)

    def runtime_errors(self) -> str | None:
        return "E rkllm: failed to malloc npu memory" if self.refused else None

    def close(self, timeout: float = 10.0) -> None:
        if self.returncode is None:
            self.returncode = 0

    def _dead(self) -> Answer:
        outcome = Outcome.KILLED if self.returncode == -9 else Outcome.CRASHED
        return Answer(None, outcome, f"returncode {self.returncode}")

    def request(self, payload: dict[str, Any], timeout: float) -> Answer:
        if not self.alive():
            return self._dead()
        if payload["op"] == "load":
            return self._load(payload)
        path, _, _ = self.handles[payload["slot"]]
        broken = self.garbage or (self.board.multi_handle_broken and len(self.handles) > 1)
        text = ",,,,,,,," if broken else f"reply of {path.rsplit('/', 1)[-1]}"
        return Answer({"ok": True, "text": text, "memory_usage_mb": None})

    def _load(self, payload: dict[str, Any]) -> Answer:
        board = self.board
        board.loads += 1
        size = int(payload["path"].rsplit("-", 1)[-1])
        domain = payload["base_domain_id"]
        resident = board.resident()
        over_domain = any(used > 4 * GiB for used in board.domain_use((size, domain)).values())
        over = over_domain or sum(s for _, _, s, _ in resident) + size > board.ram
        if over:
            if board.overcommit == "fail":
                self.refused = True
                return Answer({"ok": False, "error": "LoadFailed: rkllm_init failed (returned -1)"})
            if board.overcommit == "segv":
                self.returncode = -11
                return self._dead()
            if board.overcommit == "oom":
                victims = {c: 0 for c, _, _, _ in resident}
                for c, _, s, _ in resident:
                    victims[c] += s
                victims[self] = victims.get(self, 0) + size
                largest = max(victims, key=lambda c: victims[c])
                largest.returncode = -9
                if largest is self:
                    return self._dead()
            if board.overcommit == "garbage":
                for c, _, _, _ in resident:
                    c.garbage = True
                self.garbage = True
        self.handles[payload["slot"]] = (payload["path"], size, domain)
        return Answer({"ok": True, "runtime": "fake"})
