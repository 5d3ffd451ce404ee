"""KV reuse across chat turns: may a run continue from what the handle's KV cache holds?

An HTTP conversation is identified by its content: the runner remembers exactly what the KV cache holds
(``KvContent``: the prompt text fed since the cache was last empty plus every token generated since),
and a request whose rendered prompt *extends* that text is the same conversation, so only the new part is
prefilled (``keep_history = 1``). Anything else (an edited earlier message, a regenerated reply, another
client, another LoRA adapter, a reply cut by a stop string or ``max_tokens``, reasoning text the client did
not send back) does not extend it exactly and gets a cleared cache and a full prefill. A wrong reuse is a
wrong answer and a missed reuse is only slower, so every doubt ends in ``Fresh``.

What the runtime keeps of a reply: every token it handed to the callback, but not the end-of-turn token
that ended generation (sampled, never fed back through the model); the rendered history's end-of-turn
marker is therefore part of the next suffix. Only a reply the model ended itself is known this exactly:
a run cut by the runner (stop string, limit), aborted, paused or ended by ``max_new_tokens`` leaves the
cache with content rkio cannot name (the runtime may have fed the last token or not), so it is forgotten.
``rkio probe`` compares reuse against a fresh prefill on a board.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTEXT_MARGIN = 1  # a cache this close to max_context_len may have been shifted by the runtime (n_keep)


@dataclass(frozen=True, slots=True)
class KvKey:
    """What else decides the cache's content besides the text: the adapter it was computed under and the
    runtime's thinking switch (both change the model's state for the same text)."""

    lora: str | None
    enable_thinking: bool


@dataclass(frozen=True, slots=True)
class KvContent:
    """Exactly what an HTTP conversation left in the KV cache."""

    text: str
    key: KvKey
    tokens: int  # context positions in use (the runtime's count, else an estimate)


@dataclass(frozen=True, slots=True)
class Reuse:
    """Continue: prefill only ``suffix`` on top of the held content."""

    suffix: str


@dataclass(frozen=True, slots=True)
class Fresh:
    """Clear the cache (when it may hold anything) and prefill the whole prompt."""

    reason: str  # empty | unknown | diverged | adapter | context


Plan = Reuse | Fresh


def plan(held: KvContent | None, prompt: str, key: KvKey, *, suffix_tokens: int,
         max_context_len: int) -> Plan:
    """The plan for a run of ``prompt`` under ``key`` given what the cache holds.

    ``suffix_tokens`` estimates the new part's length: a reuse that would overflow the context starts
    over, so the whole prompt meets the runtime's own limit (a ``context_length_exceeded`` naming the
    numbers) instead of a half-extended cache.
    """
    if held is None:
        return Fresh("empty")
    if held.key != key:
        return Fresh("adapter")
    if len(prompt) <= len(held.text) or not prompt.startswith(held.text):
        return Fresh("diverged")
    if held.tokens + suffix_tokens > max_context_len:
        return Fresh("context")
    return Reuse(prompt[len(held.text):])


def after_run(prompt: str, key: KvKey, generated: str, *, ended_by_model: bool, tokens: int,
              max_context_len: int) -> KvContent | None:
    """What the cache holds after a run of the full ``prompt`` that generated ``generated``; None when
    that is not known exactly (the next run then clears the cache)."""
    if not ended_by_model or tokens + CONTEXT_MARGIN >= max_context_len:
        return None
    return KvContent(prompt + generated, key, tokens)
