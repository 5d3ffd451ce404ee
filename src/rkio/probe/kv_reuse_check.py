"""``rkio probe --kv-reuse``: does continuing from the KV cache give the same greedy reply as a full
prefill of the history on this runtime, and how much prefill does it save?

One runner plays a conversation with KV reuse (each turn prefills only the new messages); then, with the
first runner gone (a board may hold one instance of a big model only), a second runner replays every
turn's whole history from an empty cache. Greedy sampling (``top_k = 1``) makes the replies comparable:
any difference means the runtime's cache does not hold what rkio assumes (``rkio.engine.runner.kv_reuse``:
every delivered token, not the end-of-turn token), and reuse must stay off (``kv_reuse = false``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rkio.engine.runner import RunnerProcess
from rkio.engine.runner.messages import RunnerDone, RunnerGeneration
from rkio.engine.types import ChatMessage, ModelSpec, PrefixCacheSettings, TokenChunk
from rkio.runtime.base import GenerateParams, LoadParams, Sampling

QUESTIONS = (
    "Name three colours of the rainbow.",
    "Which of them is the warmest?",
    "Write one sentence about it.",
    "Now translate that sentence into French.",
    "How many words does your last answer have?",
    "Summarise our conversation in five words.",
)
GREEDY = Sampling(top_k=1, top_p=1.0, temperature=0.0, repeat_penalty=1.0)


@dataclass(frozen=True, slots=True)
class TurnCheck:
    """One turn: the replies and prefill work with reuse and with a fresh full prefill."""

    turn: int
    identical: bool
    reuse_tokens: int
    fresh_tokens: int
    reuse_prefill_ms: float | None
    fresh_prefill_ms: float | None
    reuse_reply: str
    fresh_reply: str


async def _reply(runner: RunnerProcess, messages: Sequence[ChatMessage], max_new_tokens: int,
                 ) -> tuple[str, RunnerDone]:
    gen = RunnerGeneration(params=GenerateParams(max_new_tokens=max_new_tokens), messages=tuple(messages))
    parts: list[str] = []
    done: RunnerDone | None = None
    async for item in runner.generate(gen):
        if isinstance(item, TokenChunk):
            parts.append(item.text)
        else:
            done = item
    assert done is not None  # a generation stream always ends with RunnerDone or raises
    return "".join(parts), done


def probe_spec(model: Path, *, max_context_len: int = 2048, max_new_tokens: int = 32,
               abi: str | None = None) -> ModelSpec:
    """The rkllm model at ``model`` with greedy sampling, as the check loads it."""
    stat = model.stat()
    load = LoadParams(model_path=str(model), max_context_len=max_context_len, max_new_tokens=max_new_tokens,
                      sampling=GREEDY)
    return ModelSpec(name=model.stem, path=str(model), runtime="rkllm", size_bytes=stat.st_size,
                     mtime_ns=stat.st_mtime_ns, load=load, abi=abi)


async def check(spec: ModelSpec, *, env: Mapping[str, str] | None = None, turns: int = len(QUESTIONS),
                load_timeout: float = 300.0) -> list[TurnCheck]:
    """Play ``turns`` turns with reuse, then replay each turn fresh; one ``TurnCheck`` per turn."""
    load, max_new_tokens = spec.load, spec.load.max_new_tokens
    env = dict(os.environ if env is None else env)
    histories: list[list[ChatMessage]] = []
    played: list[tuple[str, RunnerDone]] = []
    runner = await RunnerProcess.start(spec, load, env=env, load_timeout=load_timeout)
    try:
        messages: list[ChatMessage] = []
        for k in range(turns):
            messages.append(ChatMessage("user", QUESTIONS[k % len(QUESTIONS)]))
            histories.append(list(messages))
            text, done = await _reply(runner, messages, max_new_tokens)
            played.append((text, done))
            messages.append(ChatMessage("assistant", text))
    finally:
        await runner.stop(grace=10.0)
    fresh = await RunnerProcess.start(replace(spec, kv_reuse=False), load, env=env, load_timeout=load_timeout)
    results = []
    try:
        for k, (history, (text, done)) in enumerate(zip(histories, played, strict=True), 1):
            expected, full = await _reply(fresh, history, max_new_tokens)
            results.append(TurnCheck(k, text == expected, done.prompt_tokens, full.prompt_tokens,
                                     done.perf.prefill_ms if done.perf else None,
                                     full.perf.prefill_ms if full.perf else None, text, expected))
    finally:
        await fresh.stop(grace=10.0)
    return results


def confirmed(results: Sequence[TurnCheck]) -> bool:
    """Every reply identical, and reuse really happened."""
    return all(r.identical for r in results) and any(r.reuse_tokens < r.fresh_tokens for r in results)


def summary(results: Sequence[TurnCheck]) -> str:
    """A table of the turns and a verdict."""
    lines = ["turn  same reply  prefill tokens (reuse / fresh)  prefill ms (reuse / fresh)"]
    for r in results:
        ms = (f"{r.reuse_prefill_ms:8.1f} / {r.fresh_prefill_ms:8.1f}"
              if r.reuse_prefill_ms is not None and r.fresh_prefill_ms is not None else "n/a (no perf)")
        lines.append(f"{r.turn:4d}  {'yes' if r.identical else 'NO ':>9s}  "
                     f"{r.reuse_tokens:14d} / {r.fresh_tokens:<14d}  {ms}")
    bad = [r for r in results if not r.identical]
    saved = sum(r.fresh_tokens - r.reuse_tokens for r in results)
    if not bad and saved <= 0:
        lines.append("Inconclusive: no turn continued from the cache (a reply cut by max_new_tokens is "
                     "never reused); run again with a larger --max-new-tokens.")
    elif bad:
        first = bad[0]
        lines.append(f"KV reuse differs from a fresh prefill at turn {first.turn}: reuse said "
                     f"{first.reuse_reply!r}, fresh said {first.fresh_reply!r}. Set kv_reuse = false in "
                     "model.toml and report this runtime.")
    else:
        lines.append(f"KV reuse gives the same greedy replies as a fresh prefill; it saved {saved} prompt "
                     "tokens of prefill over the conversation.")
    return "\n".join(lines)


SHARED_SYSTEM = "You are a helpful assistant on a small board. " + " ".join(
    f"Rule {i}: answer briefly, precisely and politely." for i in range(1, 25))


@dataclass(frozen=True, slots=True)
class PrefixCheck:
    """A new conversation whose long system prompt comes from a prompt-cache file, against a fresh one."""

    identical: bool
    cached_prefill_ms: float | None
    fresh_prefill_ms: float | None
    cached_tokens: int
    fresh_tokens: int
    runtime_name: str

    @property
    def speeds_up(self) -> bool:
        """Loading the file skipped the prefix's prefill: clearly less prefill time (or, without timings,
        fewer prefilled tokens)."""
        if self.cached_prefill_ms is not None and self.fresh_prefill_ms is not None \
                and self.fresh_prefill_ms >= 1.0:
            return self.cached_prefill_ms < 0.7 * self.fresh_prefill_ms
        return self.cached_tokens < self.fresh_tokens


async def check_prefix_cache(spec: ModelSpec, directory: Path, *, env: Mapping[str, str] | None = None,
                             load_timeout: float = 300.0) -> PrefixCheck:
    """Save the shared system prompt's cache in a first conversation, then time a second one with it
    against a fresh prefill of the same messages (on a runner that uses no prompt caches)."""
    env = dict(os.environ if env is None else env)
    caches = PrefixCacheSettings(str(directory), "on", 1 << 34, 86400.0)
    limit = spec.load.max_new_tokens
    second = [ChatMessage("system", SHARED_SYSTEM), ChatMessage("user", QUESTIONS[1])]
    runner = await RunnerProcess.start(replace(spec, prefix_caches=caches), spec.load, env=env,
                                       load_timeout=load_timeout)
    try:
        await _reply(runner, [ChatMessage("system", SHARED_SYSTEM), ChatMessage("user", QUESTIONS[0])], limit)
        text, done = await _reply(runner, second, limit)
        name = runner.runtime_name
    finally:
        await runner.stop(grace=10.0)
    fresh = await RunnerProcess.start(replace(spec, kv_reuse=False), spec.load, env=env,
                                      load_timeout=load_timeout)
    try:
        expected, full = await _reply(fresh, second, limit)
    finally:
        await fresh.stop(grace=10.0)
    return PrefixCheck(text == expected, done.perf.prefill_ms if done.perf else None,
                       full.perf.prefill_ms if full.perf else None, done.prompt_tokens, full.prompt_tokens,
                       name)


def prefix_summary(check: PrefixCheck) -> str:
    ms = (f"{check.cached_prefill_ms:.1f} ms with the cache file, {check.fresh_prefill_ms:.1f} ms fresh"
          if check.cached_prefill_ms is not None and check.fresh_prefill_ms is not None else "no timings")
    verdict = ("loading it skips the prefix's prefill" if check.identical and check.speeds_up else
               "it gives a different reply: prompt caches stay off" if not check.identical else
               "loading it does not speed up the prefill (rknn-llm #399): prompt caches stay off")
    return (f"prompt cache of a shared system prompt: {ms}, prefill tokens {check.cached_tokens} / "
            f"{check.fresh_tokens}; {verdict}")
