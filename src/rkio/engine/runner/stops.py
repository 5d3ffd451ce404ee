"""Stop strings: cut the generated text before the first stop string, holding back possible prefixes.

Tokens rarely align with stop strings ("</s" + ">" or "Obs" + "ervation:"), so text that could still turn
into a stop string is held back until the next token settles it. Token ids travel with their text: an id
is released with the first character of its token's text that is released.
"""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    """Feed decoded tokens in order; get back what may be shown and whether a stop string was reached."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(dict.fromkeys(s for s in stops if s))
        self._firsts = frozenset(s[0] for s in self.stops)  # a stop string or its prefix starts with one
        self._held = ""  # text not yet released (a possible stop-string prefix)
        self._held_ids: list[tuple[int, int]] = []  # (offset in _held, id) of tokens not yet released
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended the text

    def feed(self, text: str, token_id: int) -> tuple[str, list[int]]:
        """Returns (text to release, ids to release). After a stop string, ``stopped`` is set."""
        if self.stopped:
            return "", []
        if text and not self._held and not self._held_ids and self._firsts.isdisjoint(text):
            return text, [token_id]  # the common case, per token: nothing to hold back or cut
        self._held_ids.append((len(self._held), token_id))
        buffer = self._held + text
        cut = self._first_stop(buffer)
        if cut is not None:
            self.stopped = True
            ids = [tid for offset, tid in self._held_ids if offset < cut]
            self._held, self._held_ids = "", []
            return buffer[:cut], ids
        release = len(buffer) - self._holdback(buffer)
        ids = [tid for offset, tid in self._held_ids if offset < release]
        self._held_ids = [(offset - release, tid) for offset, tid in self._held_ids if offset >= release]
        self._held = buffer[release:]
        return buffer[:release], ids

    def flush(self) -> tuple[str, list[int]]:
        """At the end of the generation: whatever was held back was not a stop string after all."""
        text, ids = self._held, [tid for _, tid in self._held_ids]
        self._held, self._held_ids = "", []
        return ("", []) if self.stopped else (text, ids)

    def _first_stop(self, buffer: str) -> int | None:
        first: int | None = None
        for stop in self.stops:
            index = buffer.find(stop)
            if index >= 0 and (first is None or index < first):
                first, self.matched = index, stop
        return first

    def _holdback(self, buffer: str) -> int:
        """Length of the longest suffix of ``buffer`` that is a proper prefix of some stop string."""
        longest = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest
