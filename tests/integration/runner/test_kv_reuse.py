"""KV reuse across chat turns on real runner processes (sim models with ``context_reply=1``, whose reply is a
function of the whole KV context): a reply with reuse equals the reply after a fresh full prefill."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from rkio.engine.runner import RunnerProcess
from rkio.engine.runner.messages import RunnerDone, RunnerGeneration
from rkio.engine.types import ChatMessage, HandleState, ModelSpec, PrefixCacheSettings, TokenChunk
from rkio.errors import ContextLengthExceeded
from rkio.runtime.base import GenerateParams

pytestmark = pytest.mark.timeout(120)

SpecMaker = Callable[..., ModelSpec]


async def start(spec: ModelSpec, env: dict[str, str], runners: list[RunnerProcess]) -> RunnerProcess:
    runner = await RunnerProcess.start(spec, spec.load, env=env, load_timeout=30.0)
    runners.append(runner)
    return runner


async def chat(runner: RunnerProcess, messages: list[ChatMessage], *, stop: tuple[str, ...] = (),
               max_tokens: int | None = None, lora: str | None = None,
               handle_state: HandleState | None = None) -> tuple[str, RunnerDone]:
    gen = RunnerGeneration(params=GenerateParams(max_new_tokens=max_tokens, lora=lora),
                           messages=tuple(messages), stop=stop, handle_state=handle_state)
    text: list[str] = []
    done = None
    async for item in runner.generate(gen):
        if isinstance(item, TokenChunk):
            text.append(item.text)
        else:
            done = item
    assert done is not None
    return "".join(text), done


async def pair(make_spec: SpecMaker, env: dict[str, str], runners: list[RunnerProcess],
               **header: object) -> tuple[RunnerProcess, RunnerProcess]:
    spec = make_spec("sim-ctx", context_reply=1, **header)
    return await start(spec, env, runners), await start(replace(spec, kv_reuse=False), env, runners)


async def assert_full_prefill(reuse: RunnerProcess, fresh: RunnerProcess,
                              messages: list[ChatMessage]) -> None:
    """The reusing runner replies as the fresh one and prefilled the whole prompt as well."""
    text, done = await chat(reuse, messages)
    expected, full = await chat(fresh, messages)
    assert (text, done.prompt_tokens) == (expected, full.prompt_tokens)


async def test_ten_turns_reuse_the_cache_and_reply_as_a_full_prefill(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    reuse, fresh = await pair(make_spec, sim_env, runners)
    messages = [ChatMessage("system", "you are a terse assistant")]
    prefilled: list[tuple[int, int]] = []
    for turn in range(10):
        messages.append(ChatMessage("user", f"question {turn} about topic {turn * 7}"))
        text, done = await chat(reuse, messages)
        expected, full = await chat(fresh, messages)
        assert text == expected
        assert text.startswith(" ctx")  # the sim's context digest: any difference in the context shows
        prefilled.append((done.prompt_tokens, full.prompt_tokens))
        messages.append(ChatMessage("assistant", text))
    # turn 1 prefills everything; later turns only the new messages, which do not grow with the history
    assert prefilled[0][0] == prefilled[0][1]
    assert all(mine < full for mine, full in prefilled[1:])
    assert prefilled[9][0] <= prefilled[1][0] + 2


async def test_an_edited_or_foreign_history_gets_a_full_prefill(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    reuse, fresh = await pair(make_spec, sim_env, runners)
    a = [ChatMessage("user", "alpha one")]
    text, _ = await chat(reuse, a)
    a.append(ChatMessage("assistant", text))
    a.append(ChatMessage("user", "alpha two"))
    b = [ChatMessage("user", "bravo one")]
    for conversation in (b, a, [ChatMessage("user", "alpha ONE"), *a[1:]], a[:1]):
        await assert_full_prefill(reuse, fresh, conversation)


async def test_stop_strings_and_truncation_leave_nothing_reused(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    reuse, fresh = await pair(make_spec, sim_env, runners)
    for kwargs in ({"stop": ("beta",)}, {"max_tokens": 3}):
        messages = [ChatMessage("user", "alpha beta gamma delta")]
        text, _ = await chat(reuse, messages, **kwargs)  # type: ignore[arg-type]
        messages += [ChatMessage("assistant", text), ChatMessage("user", "next")]
        await assert_full_prefill(reuse, fresh, messages)


async def test_a_lease_never_sees_an_http_conversation_and_vice_versa(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    reuse, fresh = await pair(make_spec, sim_env, runners)
    messages = [ChatMessage("user", "private words")]
    text, _ = await chat(reuse, messages)
    messages += [ChatMessage("assistant", text), ChatMessage("user", "more")]
    lease = HandleState(owner="lease-1")
    mine, _ = await chat(reuse, [ChatMessage("user", "lease talk")], handle_state=lease)
    theirs, _ = await chat(fresh, [ChatMessage("user", "lease talk")])
    assert mine == theirs
    await assert_full_prefill(reuse, fresh, messages)


async def test_a_conversation_that_outgrows_the_context_gets_a_clear_error(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess]) -> None:
    spec = make_spec("sim-ctx", context_reply=1)
    spec = replace(spec, load=replace(spec.load, max_context_len=96))
    runner = await start(spec, sim_env, runners)
    messages: list[ChatMessage] = []
    with pytest.raises(ContextLengthExceeded, match=r"exceed the max context length\[96\]"):
        for turn in range(20):
            messages.append(ChatMessage("user", f"turn {turn} with a few more words to fill it"))
            text, done = await chat(runner, messages)
            assert done.finish == "stop"
            messages.append(ChatMessage("assistant", text))
    assert len(messages) > 4  # several turns fitted before the history outgrew the context
    # the handle is still good: a new conversation starts from a cleared cache
    fresh = [ChatMessage("user", "hello again")]
    text, done = await chat(runner, fresh)
    assert done.prompt_tokens < 20 and text.startswith(" ctx")


LONG_SYSTEM = "You are a careful assistant. " + " ".join(f"rule{i} applies always" for i in range(40))


async def test_a_shared_system_prompt_is_prefilled_once_through_a_prompt_cache(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess], tmp_path: Path) -> None:
    spec = make_spec("sim-ctx", context_reply=1)
    caches = PrefixCacheSettings(str(tmp_path / "prompt-cache"), "on", 1 << 20, 3600.0)
    cached = await start(replace(spec, prefix_caches=caches), sim_env, runners)
    fresh = await start(replace(spec, kv_reuse=False), sim_env, runners)
    for user in ("first conversation", "second conversation", "third one"):
        messages = [ChatMessage("system", LONG_SYSTEM), ChatMessage("user", user)]
        text, done = await chat(cached, messages)
        expected, full = await chat(fresh, messages)
        assert text == expected
        saved = list((tmp_path / "prompt-cache" / "prefix").glob("*.cache"))
        assert len(saved) == 1
        # the prefix comes from the cache file: only the user's message is prefilled
        assert done.prompt_tokens < full.prompt_tokens - 100
    # a different system prompt gets a file of its own
    await chat(cached, [ChatMessage("system", LONG_SYSTEM + " extra"), ChatMessage("user", "hi")])
    assert len(list((tmp_path / "prompt-cache" / "prefix").glob("*.cache"))) == 2


async def test_prompt_caches_wait_for_the_probe_in_auto_mode(
        make_spec: SpecMaker, sim_env: dict[str, str], runners: list[RunnerProcess], tmp_path: Path) -> None:
    spec = make_spec("sim-ctx", context_reply=1)
    caches = PrefixCacheSettings(str(tmp_path / "prompt-cache"), "auto", 1 << 20, 3600.0)
    runner = await start(replace(spec, prefix_caches=caches), sim_env, runners)
    await chat(runner, [ChatMessage("system", LONG_SYSTEM), ChatMessage("user", "hello")])
    assert not (tmp_path / "prompt-cache" / "prefix").exists()
    confirmed = tmp_path / "prompt-cache" / "confirmed" / runner.runtime_name
    confirmed.parent.mkdir(parents=True)
    confirmed.write_text("confirmed by a test\n")
    runner = await start(replace(spec, prefix_caches=caches), sim_env, runners)
    await chat(runner, [ChatMessage("system", LONG_SYSTEM), ChatMessage("user", "hello")])
    assert len(list((tmp_path / "prompt-cache" / "prefix").glob("*.cache"))) == 1
