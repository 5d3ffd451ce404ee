"""``ChunkPush``: a streaming consumer's offer to take token chunks the moment they arrive.

At an NPU's pace every token wakes the gateway on its own. Handed through the iterator, a chunk resumes
the request's task and three generators (the runner client's, the session's, the API's stream) before
its bytes go out, and then all of them suspend again: that chain was most of what the gateway executed
per token (the board-pace issue). A consumer that can take a chunk synchronously (an HTTP stream whose
headers are out) sets ``take``; the runner client then calls it from the pipe's read callback, but only
while nothing is queued before that chunk and the consumer is waiting for its next one, so chunks keep
their order and the iterator still delivers whatever the consumer could not take.

``take`` returns False when it cannot take the chunk now (its previous write still waits for a slow
client): that chunk, and every one after it until the consumer waits again, comes through the iterator as
before. ``take`` must not raise; an error of its own is the consumer's to report on its next step.
A producer is free to ignore the offer (test fakes, the CPU runtime's callers): the iterator then
delivers everything, as it always did.
"""

from __future__ import annotations

from collections.abc import Callable

from rkio.engine.types import TokenChunk


class ChunkPush:
    """Holds the consumer's ``take``; None until the consumer is ready (and again once it is not)."""

    __slots__ = ("take",)

    def __init__(self) -> None:
        self.take: Callable[[TokenChunk], bool] | None = None
