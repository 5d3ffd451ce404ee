"""The runner's end of a relay (``rkio.engine.chunk_push``): each token's HTTP chunk written straight to
the client's socket, which the gateway lent for the rest of the generation.

Writes never block: the socket is the gateway's, non-blocking, shared with it. A write the socket does
not take whole (the client reads slower than tokens come) ends the relay, and the unsent rest of that
chunk goes back to the gateway, whose flow control takes it from there. Nothing is ever written after
``close``: the gateway writes to the socket again only once it has heard that the relay ended.
"""

from __future__ import annotations

import socket

import msgspec

from rkio.engine.chunk_push import RelayFormat
from rkio.engine.runner.frames import RelayEnd
from rkio.timestamps import utc_timestamp

_FLAGS = socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL
_encode = msgspec.json.encode


class DirectSocket:
    """A lent client socket (``fd``, now ours to close) and how to write a token to it."""

    def __init__(self, fd: int, fmt: RelayFormat, last_token_at: float, offer: int, report_s: float) -> None:
        self._sock = socket.socket(fileno=fd)
        self.offer = offer
        self._report_s = report_s  # how often the gateway hears of tokens sent (stall watchdog, metrics)
        self._prefix, self._suffix, self._stamp = fmt.prefix, fmt.suffix, fmt.stamp_suffix
        self._last = last_token_at
        self._reported = last_token_at
        self.gaps: list[float] = []
        self.residue = b""

    def write(self, text: str, n_tokens: int, now: float) -> str | None:
        """Send the chunk of ``text`` (``n_tokens`` tokens); None if it all went, else why the relay ends:
        "full" (``residue`` holds what the socket did not take) or "broken" (the client is gone)."""
        if n_tokens == 1:
            self.gaps.append(now - self._last)
            self._last = now
        elif n_tokens:
            self.gaps.extend([(now - self._last) / n_tokens] * n_tokens)
            self._last = now
        if not text:  # an empty chunk would end the HTTP response
            return None
        if self._stamp is None:
            body = self._prefix + _encode(text) + self._suffix
        else:
            body = self._prefix + utc_timestamp().encode() + self._stamp + _encode(text) + self._suffix
        data = b"%x\r\n%b\r\n" % (len(body), body)
        try:
            sent = self._sock.send(data, _FLAGS)
        except BlockingIOError:
            sent = 0
        except OSError:
            return "broken"
        if sent < len(data):
            self.residue = data[sent:]
            return "full"
        return None

    def report(self, now: float) -> list[float] | None:
        """The gaps since the last report, once ``report_s`` has passed since it; else None."""
        if now - self._reported < self._report_s or not self.gaps:
            return None
        gaps, self.gaps, self._reported = self.gaps, [], now
        return gaps

    def end(self, why: str) -> RelayEnd:
        """Give the descriptor up (the gateway's own stays open; no write after this), and the frame that
        tells the gateway: the gaps not yet reported, the residue of a full socket."""
        self._sock.close()
        return RelayEnd(self.gaps, self.residue, why, self.offer)
