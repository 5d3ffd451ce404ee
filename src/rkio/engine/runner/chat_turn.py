"""One HTTP text run's use of the KV cache: ``kv_reuse``'s plan turned into the runtime's input and the
handle state to apply, and afterwards the record of what the cache holds.

Only HTTP runs of a text prompt in generate mode take part, on runtimes that can keep history, clear the
cache and run without their own template (rkio renders the prompt, so the text is exactly what the model
sees). Everything else runs as before: ``keep_history = 0`` and the cache's content forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from rkio.engine.runner import handle_state, kv_reuse
from rkio.engine.runner.handle_state import HTTP_STATE, HandleHolds
from rkio.engine.runner.messages import RunnerGeneration
from rkio.engine.runner.prefix_cache import MIN_PREFIX_TOKENS, PrefixCacheStore, cache_key
from rkio.engine.runner.prompt import estimate_tokens
from rkio.engine.types import HandleState, ModelSpec
from rkio.runtime.base import Feature, FinishReason, GenerateParams, Perf, PromptCacheParams, Runtime

NEEDED = frozenset({Feature.KEEP_HISTORY, Feature.CLEAR_KV_CACHE, Feature.CHAT_TEMPLATE})
# and a count of the cache's length (perf or get_kv_cache_size): an estimate could miss a cache the runtime
# shifted at its limit (1.2.0 has neither, so it never reuses)
COUNTED_BY = frozenset({Feature.PERF_STATS, Feature.KV_CACHE_SIZE})
HTTP_FRESH = replace(HTTP_STATE, clear_kv=True)


@dataclass(slots=True)
class ChatTurn:
    """A run taking part in KV reuse: the whole prompt, its key, and what the cache held before."""

    prompt: str
    key: kv_reuse.KvKey
    base_tokens: int  # context positions the reused content occupied (0 after a clear)
    plan: kv_reuse.Plan
    generated: list[str] = field(default_factory=list)


def begin(gen: RunnerGeneration, params: GenerateParams, runtime: Runtime, spec: ModelSpec,
          holds: HandleHolds, max_context_len: int, prefixes: PrefixCacheStore | None = None,
          prefix: str | None = None) -> tuple[GenerateParams, HandleState, ChatTurn | None]:
    """The params to run, the handle state to apply first, and the turn (None: no reuse for this run).

    A fresh start whose prompt begins with a long shared ``prefix`` loads that prefix's prompt cache
    (saving it first when ``prefixes`` has none yet). The cache's record is dropped here: until the run
    ends the way ``finish`` trusts, nothing is known.
    """
    held, holds.kv_content = (holds.kv_content if holds.kv_owner == "" else None), None
    if gen.handle_state is not None:
        return params, gen.handle_state, None
    if (not spec.kv_reuse or params.prompt is None or params.mode != "generate"
            or not runtime.features >= NEEDED or not runtime.features & COUNTED_BY):
        return params, HTTP_STATE, None
    key = kv_reuse.KvKey(params.lora, params.enable_thinking)
    suffix = params.prompt[len(held.text):] if held is not None else params.prompt
    step = kv_reuse.plan(held, params.prompt, key, suffix_tokens=_count(runtime, suffix),
                         max_context_len=max_context_len)
    turn = ChatTurn(params.prompt, key, held.tokens if held is not None else 0, step)
    if isinstance(step, kv_reuse.Reuse):  # a prompt cache loaded for its start stays loaded
        kept = replace(HTTP_STATE, prompt_cache_path=holds.prompt_cache_path)
        return replace(params, prompt=step.suffix, keep_history=True), kept, turn
    cache = None
    if prefixes is not None and prefix is not None and _count(runtime, prefix) >= MIN_PREFIX_TOKENS:
        cache = _prefix_cache(runtime, spec, holds, prefixes, params.lora, prefix)
    return replace(params, keep_history=True), replace(HTTP_FRESH, prompt_cache_path=cache), turn


def _prefix_cache(runtime: Runtime, spec: ModelSpec, holds: HandleHolds, prefixes: PrefixCacheStore,
                  lora: str | None, prefix: str) -> str | None:
    """The prompt-cache file of ``prefix``: looked up, else saved now by prefilling the prefix alone (the
    run is stopped at its first token); None when the runtime saved nothing."""
    key = cache_key(runtime.name, spec, lora, prefix)
    found = prefixes.lookup(key)
    if found is not None:
        return found
    path = prefixes.path(key)
    prefixes.prepare()
    handle_state.apply(runtime, holds, HTTP_FRESH)  # an empty cache and no prompt cache loaded
    holds.kv_owner = ""  # the save run leaves the prefix (and a token) in the cache: the next run clears
    limit = 1 if Feature.PER_RUN_MAX_NEW_TOKENS in runtime.features else None
    runtime.generate(GenerateParams(prompt=prefix, lora=lora, max_new_tokens=limit,
                                    prompt_cache=PromptCacheParams(save=True, path=str(path))),
                     lambda token: False)
    prefixes.prune()
    return str(path) if path.is_file() else None


def finish(turn: ChatTurn, runtime: Runtime, holds: HandleHolds, finish: FinishReason, *, cut: bool,
           perf: Perf | None, max_context_len: int) -> None:
    """Record what the cache holds after ``turn``'s run ended with ``finish`` (``cut``: by the runner)."""
    generated = "".join(turn.generated)
    if Feature.KV_CACHE_SIZE in runtime.features:
        tokens = runtime.kv_cache_size()[0]
    elif perf is not None and perf.prefill_tokens > 0:
        tokens = turn.base_tokens + perf.prefill_tokens + len(turn.generated)
    else:
        return  # no count of the cache's length this time: nothing is recorded, the next run clears
    holds.kv_content = kv_reuse.after_run(turn.prompt, turn.key, generated,
                                          ended_by_model=finish == "stop" and not cut, tokens=tokens,
                                          max_context_len=max_context_len)


def _count(runtime: Runtime, text: str) -> int:
    counted = runtime.count_tokens(text)
    return counted if counted is not None else estimate_tokens(text)
