"""Where the scheduler's answers to one waiting request go: its ``Mailbox``, and the registry of them.

A request's task reads its mailbox; the supervisor writes to it (``Grant``, ``Finished``, progress
events). A closed mailbox means the request stopped listening: a grant to it is refused (``CLIENT_GONE``)
and the scheduler forgets the waiter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rkio.engine.types import EngineEvent
from rkio.errors import RkioError, RuntimeFailure

if TYPE_CHECKING:
    from rkio.engine.supervisor import Runner


@dataclass(slots=True)
class Grant:
    runner: Runner
    load_s: float | None
    granted_at: float


@dataclass(slots=True)
class Finished:
    error: RkioError | None


@dataclass(slots=True)
class Mailbox:
    """What the scheduler tells one waiting request; ``closed`` once the request stopped listening."""

    items: asyncio.Queue[EngineEvent | Grant | Finished] = field(default_factory=asyncio.Queue)
    closed: bool = False
    error: RkioError | None = None  # set by an abort: the generation must end with it
    runner: Runner | None = None
    finished: bool = False  # a Finished was read: the scheduler already ended this request

    async def until_grant(self) -> Grant | EngineEvent:
        """The next item before the grant: the ``Grant`` or a progress event. A ``Finished`` (the request
        ends without a grant) is raised as its error."""
        item = await self.items.get()
        if isinstance(item, Finished):
            self.finished = True
            raise item.error or RuntimeFailure("request finished without a grant")
        return item

    def unread_grant(self) -> Grant | None:
        """A grant can arrive after the client stopped listening; it must still be handed back."""
        while not self.items.empty():
            item = self.items.get_nowait()
            if type(item) is Grant:
                return item
        return None


class Mailboxes:
    """Request id -> mailbox, for the requests still listening."""

    def __init__(self) -> None:
        self._boxes: dict[int, Mailbox] = {}
        self._next_id = 0

    @property
    def last_id(self) -> int:
        return self._next_id

    def open(self) -> tuple[int, Mailbox]:
        self._next_id += 1
        box = Mailbox()
        self._boxes[self._next_id] = box
        return self._next_id, box

    def close(self, request_id: int) -> None:
        box = self._boxes.pop(request_id, None)
        if box is not None:
            box.closed = True

    def get(self, request_id: int) -> Mailbox | None:
        return self._boxes.get(request_id)

    def post(self, request_id: int, item: EngineEvent | Grant | Finished) -> None:
        box = self._boxes.get(request_id)
        if box is not None:
            box.items.put_nowait(item)

    def open_boxes(self) -> Iterator[tuple[int, Mailbox]]:
        return iter(list(self._boxes.items()))

    def fail_all(self, error: Callable[[], RkioError]) -> list[Runner]:
        """End every request still listening with ``error()``; returns the runners granted ones use."""
        granted: list[Runner] = []
        for _, box in self.open_boxes():
            if box.runner is not None:
                box.error = error()  # its stream ends when the runner is stopped
                granted.append(box.runner)
            else:
                box.items.put_nowait(Finished(error()))
        return granted
