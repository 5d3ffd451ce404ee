"""``ChunkPush``: a streaming consumer's offer to take token chunks the moment they arrive, or to let the
runner write them to the client's socket itself.

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

``relay`` goes one step further (``SocketRelay``): even a pushed chunk wakes two processes per token,
the runner and the gateway, and each wake-up is most of a token's CPU at an NPU's pace. A consumer whose
every token is the same bytes around the token's text (a plain streamed reply) describes them
(``RelayFormat``) and lends the client's socket; the runner then writes each token's HTTP chunk to that
socket itself and the gateway sleeps until the end, apart from a report about once a second. The runner
hands the socket back (``ended``) when the generation ends, when the socket is full (a slow client: the
gateway's flow control takes over) or when it broke; until then the consumer writes nothing to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec

from rkio.engine.types import TokenChunk

MAX_REPORT_S = 5.0  # a report wakes the gateway: rare enough to cost nothing per token at an NPU's pace


class RelayFormat(msgspec.Struct, frozen=True, array_like=True):
    """One token's bytes: ``prefix``, [a UTC timestamp (``rkio.timestamps``) and ``stamp_suffix``],
    the token's text as a JSON string, ``suffix``; sent as one HTTP/1.1 chunk. Empty text sends nothing."""

    prefix: bytes
    suffix: bytes
    stamp_suffix: bytes | None = None


class SocketRelay(Protocol):
    """A consumer's socket, lent to the runner while every token it would write is ``format``."""

    @property
    def format(self) -> RelayFormat: ...

    def ready_fd(self, reclaim: Callable[[], None]) -> int | None:
        """The socket's descriptor if everything written so far is on its way (nothing buffered), else
        None. Once it returned a descriptor the consumer writes nothing of its own until ``ended``;
        ``reclaim()`` asks for the socket back sooner (``ended`` follows)."""
        ...

    def relayed(self, gaps: Sequence[float]) -> None:
        """Tokens the runner wrote, by their gaps (seconds since the token before each)."""
        ...

    def ended(self, residue: bytes) -> None:
        """The runner no longer writes; ``residue`` (the unsent end of its last chunk) goes out first.

        Also called when the runner refused the socket (it had tokens in flight) or died."""
        ...


class RunnerRelay(SocketRelay, Protocol):
    """A ``SocketRelay`` as the runner client gets it: with how often the runner must report."""

    @property
    def report_s(self) -> float: ...


class ChunkPush:
    """Holds the consumer's ``take`` and ``relay``; None until the consumer is ready (and again once it
    is not)."""

    __slots__ = ("relay", "take")

    def __init__(self) -> None:
        self.take: Callable[[TokenChunk], bool] | None = None
        self.relay: SocketRelay | None = None


class WatchedRelay:
    """``push.relay`` as it is when asked (the consumer sets it once its headers are out), with
    ``on_tokens`` called whenever the runner reports tokens it wrote (the session's stall watchdog,
    which ``report_s`` keeps well inside)."""

    __slots__ = ("_on_tokens", "_push", "report_s")

    def __init__(self, push: ChunkPush, on_tokens: Callable[[], None], stall_timeout: float) -> None:
        self._push = push
        self._on_tokens = on_tokens
        self.report_s = min(MAX_REPORT_S, stall_timeout / 4)

    @property
    def format(self) -> RelayFormat:
        relay = self._push.relay
        assert relay is not None  # asked only after ready_fd gave a descriptor
        return relay.format

    def ready_fd(self, reclaim: Callable[[], None]) -> int | None:
        relay = self._push.relay
        return relay.ready_fd(reclaim) if relay is not None else None

    def relayed(self, gaps: Sequence[float]) -> None:
        self._on_tokens()
        if self._push.relay is not None:
            self._push.relay.relayed(gaps)

    def ended(self, residue: bytes) -> None:
        if self._push.relay is not None:
            self._push.relay.ended(residue)
