"""The gateway's side of a relay (``rkio.engine.chunk_push``): lending a consumer's client socket to the
runner, and hearing when it comes back.

A socket is offered only when everything the runner sent so far has been written to the client (the
consumer's ``ready_fd``) and the runner is told how many Tokens frames that was, so it accepts only
with nothing in flight; otherwise it refuses and the next point the consumer is caught up tries again,
a few times per generation. The descriptor travels on the relay socket (SCM_RIGHTS) just before its
Relay frame goes on the command socket, which the runner reads in that order.

The runner answers every offer with a RelayEnd (or dies), but the answer to a late offer may come after
the generation's Done: the runner client waits for it (``back``) before it lets the generation end, so
that the consumer never writes its last chunk while the runner might still write.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from rkio.engine.chunk_push import RunnerRelay, SocketRelay
from rkio.engine.runner.frames import Reclaim, Relay, Relayed, RelayEnd

log = logging.getLogger("rkio.runner")

OFFERS = 3  # refusals happen when tokens come faster than the gateway writes them: no cost to save there


class RelayLender:
    """The relay state of one runner: which consumer may lend its socket, and whether it is lent."""

    def __init__(self, sock: socket.socket | None, send: Callable[[Relay | Reclaim], None]) -> None:
        self._sock = sock
        self._send = send
        self._target: RunnerRelay | None = None  # the current consumer's, for new offers
        # the consumer whose socket is offered or held: it writes nothing of its own until RelayEnd
        self._lent_to: SocketRelay | None = None
        self._back = asyncio.Event()
        self._back.set()
        self._offers = 0
        self._offer_id = 0

    def begin(self, target: RunnerRelay | None) -> None:
        """A generation starts; ``target`` is its consumer's offer (None: no relay)."""
        self._target, self._offers = target, OFFERS

    async def back(self) -> None:
        """Returns once no offer is outstanding and the runner holds no socket."""
        await self._back.wait()

    def release(self) -> None:
        """The consumer is gone: no more offers. A socket it lent still hears when it is back."""
        self._target = None

    def offer(self, taken: int, commands: asyncio.WriteTransport | None) -> None:
        """Lend the consumer's socket if it can be (it wrote all ``taken`` Tokens frames)."""
        target = self._target
        if (target is None or self._lent_to is not None or not self._offers or self._sock is None
                or commands is None or commands.is_closing() or commands.get_write_buffer_size()):
            return
        fd = target.ready_fd(self._reclaim)
        if fd is None:
            return
        try:
            socket.send_fds(self._sock, [b"r"], [fd])
        except OSError as exc:  # full (never, in practice) or the runner is gone: keep the socket
            log.debug("could not lend a client socket: %s", exc)
            target.ended(b"")
            return
        self._lent_to = target
        self._back.clear()
        self._offers -= 1
        self._offer_id += 1
        self._send(Relay(target.format, taken, self._offer_id, target.report_s))

    def _reclaim(self) -> None:
        if self._lent_to is not None:
            self._send(Reclaim())

    def relayed(self, frame: Relayed) -> None:
        if self._lent_to is not None:
            self._lent_to.relayed(frame.gaps)

    def ended(self, frame: RelayEnd) -> None:
        target = self._lent_to
        if target is None or frame.offer != self._offer_id:
            return  # an answer nobody waits for any more
        self._give_back()
        if frame.gaps:
            target.relayed(frame.gaps)
        target.ended(frame.residue)

    def gone(self) -> None:
        """The runner died: whatever it held is closed, the socket is the consumer's again."""
        target = self._lent_to
        if target is not None:
            self._give_back()
            target.ended(b"")

    def _give_back(self) -> None:
        self._lent_to = None
        self._back.set()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
