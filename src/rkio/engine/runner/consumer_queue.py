"""``ConsumerQueue``: the runner's answer frames to the command in flight, waiting for its one consumer.

Frames arrive in the pipe's read callback and wait here until the consumer (a generation's iterator, or a
runtime call) takes them. A generation's consumer may also offer a push (``rkio.engine.chunk_push``): a
token frame that arrives while the consumer waits with nothing queued before it goes to the push instead,
so that chunks never change order whichever way they go.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

from rkio.engine.runner.frames import FromRunner, Tokens
from rkio.engine.types import TokenChunk

log = logging.getLogger("rkio.runner")


class ConsumerQueue:
    """Frames for one consumer at a time; ``close`` (the pipe's end) lets a waiting ``get`` return None."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str) -> None:
        self.push: Callable[[TokenChunk], bool] | None = None  # the current consumer's, while it waits
        self._frames: deque[FromRunner] = deque()
        self._loop = loop
        self._name = name
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.taken = 0  # Tokens frames the consumer took since the last clear (pushed or through get)

    def put(self, frame: FromRunner) -> None:
        self._frames.append(frame)
        self._wake()

    @property
    def queued(self) -> bool:
        return bool(self._frames)

    def offer(self, frame: Tokens) -> bool:
        """Hand ``frame`` to the push if the consumer waits with nothing queued before it (True); else
        queue it (False)."""
        push, waiter = self.push, self._waiter
        if push is not None and not self._frames and waiter is not None and not waiter.done():
            try:
                if push(TokenChunk(frame.text, tuple(frame.ids))):
                    self.taken += 1
                    return True
            except Exception:  # a broken consumer must not take the frame pipe down: it gets them queued
                log.exception("runner for %s: a consumer's push failed", self._name)
                self.push = None
        self.put(frame)
        return False

    async def get(self) -> FromRunner | None:
        """The next frame; None once the pipe has closed and nothing is left."""
        while not self._frames:
            if self._closed:
                return None
            self._waiter = self._loop.create_future()
            await self._waiter
        return self._frames.popleft()

    def chunk(self, first: Tokens) -> TokenChunk:
        """``first`` and every token frame queued right behind it, as one chunk."""
        frames = self._frames
        self.taken += 1
        if not (frames and isinstance(frames[0], Tokens)):
            return TokenChunk(first.text, tuple(first.ids))
        texts, ids = [first.text], list(first.ids)
        while frames and isinstance(frames[0], Tokens):
            self.taken += 1
            more = frames.popleft()
            texts.append(more.text)  # type: ignore[union-attr]
            ids.extend(more.ids)  # type: ignore[union-attr]
        return TokenChunk("".join(texts), tuple(ids))

    def clear(self) -> None:
        self._frames.clear()
        self.taken = 0

    def release(self) -> None:
        """The consumer is gone: nobody waits, no push."""
        self._waiter = self.push = None

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
