"""The simulator's ``context_reply=1`` models: the reply is a function of the whole KV context, so a run
that continues from the cache replies exactly as a fresh run of the same text, and nothing else does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import simkit
from rkio.runtime.base import ChatTemplateOverride, Feature, GenerateParams, LoadParams, LoraAdapter, Token
from rkio.runtime.rkllm import RkllmRuntime

NO_TEMPLATE = ChatTemplateOverride("", "", "")


def run(runtime: RkllmRuntime, prompt: str, keep: bool, lora: str | None = None) -> str:
    tokens: list[Token] = []

    def sink(token: Token) -> bool:
        tokens.append(token)
        return True

    runtime.generate(GenerateParams(prompt=prompt, keep_history=keep, lora=lora), sink)
    return "".join(t.text for t in tokens)


@pytest.fixture
def ctx(runtime: RkllmRuntime, model: Callable[..., Path]) -> RkllmRuntime:
    if Feature.KEEP_HISTORY not in runtime.features:
        pytest.skip("no keep_history before 1.2.0")
    runtime.load(LoadParams(model_path=str(model(context_reply=1)), max_context_len=1024, max_new_tokens=64))
    runtime.set_chat_template(NO_TEMPLATE)
    return runtime


def test_a_continued_run_replies_as_a_fresh_run_of_the_whole_text(ctx: RkllmRuntime) -> None:
    first = run(ctx, "user: one two three\n", keep=True)
    assert first == "".join(simkit.expected_context_reply("user: one two three\n", 12))
    second = run(ctx, "\nuser: four\n", keep=True)
    whole = "user: one two three\n" + first + "\nuser: four\n"
    assert second == "".join(simkit.expected_context_reply(whole, 12))
    assert run(ctx, whole, keep=False) == second


def test_a_cleared_or_foreign_cache_changes_the_reply(ctx: RkllmRuntime) -> None:
    first = run(ctx, "alpha beta\n", keep=True)
    stale = run(ctx, "gamma\n", keep=True)  # continues the cache: not what a fresh "gamma" gets
    assert stale != run(ctx, "gamma\n", keep=False)
    ctx.clear_kv_cache(False)
    assert run(ctx, "gamma\n", keep=True) == "".join(simkit.expected_context_reply("gamma\n", 12))
    assert first


def test_the_adapter_a_context_was_computed_under_is_part_of_it(ctx: RkllmRuntime, tmp_path: Path) -> None:
    if Feature.LORA not in ctx.features:
        pytest.skip("no LoRA")
    (tmp_path / "a.lora").write_bytes(b"x")
    ctx.load_lora(LoraAdapter(str(tmp_path / "a.lora"), "a"))
    first = run(ctx, "one\n", keep=True)
    mixed = run(ctx, "two\n", keep=True, lora="a")  # a context half computed without the adapter
    fresh = run(ctx, "one\n" + first + "two\n", keep=False, lora="a")
    assert mixed != fresh
    assert fresh == "".join(simkit.expected_context_reply("one\n" + first + "two\n", 12, lora="a"))
