"""Splitting a model's ``<think>…</think>`` reasoning from its answer, incrementally.

The rule (documented in docs and the OpenAI/Ollama route modules): the split happens only when the request
asks for thinking (OpenAI ``reasoning_effort`` other than "none", or ``think``/``enable_thinking`` true;
Ollama ``think: true``). Then a reply that *starts* with ``<think>`` (after whitespace) has everything up to
``</think>`` reported as reasoning and the rest as content. A reply that does not start with the tag is all
content. Without the request asking, text passes through verbatim, tags included.
"""

from __future__ import annotations

OPEN = "<think>"
CLOSE = "</think>"


def partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag`` (a tag cut by a chunk)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ThinkSplitter:
    """Feed text pieces; get ``(reasoning, content)`` pieces back, holding back only possible partial tags."""

    def __init__(self) -> None:
        self._state = "start"  # start -> think -> content, or start -> content
        self._pending = ""

    def feed(self, text: str) -> tuple[str, str]:
        if self._state == "content" and not self._pending:
            return "", text
        self._pending += text
        reasoning = content = ""
        if self._state == "start":
            stripped = self._pending.lstrip()
            if stripped.startswith(OPEN):
                self._state = "think"
                self._pending = stripped[len(OPEN):].lstrip("\n")
            elif OPEN.startswith(stripped):
                return "", ""  # only whitespace or the beginning of the tag so far
            else:
                self._state = "content"
                content, self._pending = self._pending, ""
                return "", content
        if self._state == "think":
            end = self._pending.find(CLOSE)
            if end < 0:
                hold = partial_suffix(self._pending, CLOSE)
                cut = len(self._pending) - hold
                reasoning, self._pending = self._pending[:cut], self._pending[cut:]
                return reasoning, ""
            reasoning = self._pending[:end]
            self._pending = self._pending[end + len(CLOSE):]
            self._state = "after"
        if self._state == "after":
            # the answer usually follows the closing tag after blank lines: drop them
            rest = self._pending.lstrip()
            if not rest:
                return reasoning, ""
            self._state = "content"
            self._pending = ""
            content = rest
        return reasoning, content

    def finish(self) -> tuple[str, str]:
        """Flush what is held back at the end of the reply."""
        pending, self._pending = self._pending, ""
        if self._state == "think":
            return pending, ""
        if self._state == "after":
            return "", ""
        return "", pending


def split_reasoning(text: str) -> tuple[str, str]:
    """Whole-text version: ``(reasoning, content)``."""
    splitter = ThinkSplitter()
    r1, c1 = splitter.feed(text)
    r2, c2 = splitter.finish()
    return r1 + r2, c1 + c2
