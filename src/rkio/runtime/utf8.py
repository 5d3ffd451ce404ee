"""Reassembles UTF-8 text that a runtime delivers in arbitrary byte pieces.

rkllm hands out one token per callback, and a token can end in the middle of a multi-byte character (the
runtime then reports the WAITING state). Callers must only ever see whole characters, so bytes are
buffered here until the character they start is complete.
"""

from __future__ import annotations

import codecs


class Utf8Reassembler:
    """Incremental UTF-8 decoder: ``feed`` returns every character completed so far, never half of one.

    Invalid bytes become U+FFFD instead of raising: a runtime emitting garbage must not take the
    generation (or the C callback it runs in) down.
    """

    __slots__ = ("_decoder", "_holding")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._holding = False  # the decoder may hold the start of a character

    def feed(self, data: bytes) -> str:
        """Add ``data``; return the characters it completes (possibly "")."""
        if not self._holding and data[-1:] < b"\x80":
            # nothing held and the piece ends in ASCII, so it cannot end inside a character: a plain
            # decode gives what the incremental decoder would, without its Python-level call
            return data.decode("utf-8", "replace")
        text = self._decoder.decode(data, final=False)
        self._holding = bool(self._decoder.getstate()[0])
        return text

    @property
    def pending(self) -> bytes:
        """Bytes of a character started but not yet complete."""
        buffered, _ = self._decoder.getstate()
        return buffered

    def flush(self) -> str:
        """End of stream: a dangling partial character becomes U+FFFD; the decoder is reset."""
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        self._holding = False
        return text
