"""kv_reuse: a prompt that extends the cache's exact content reuses it; everything else starts over."""

from __future__ import annotations

from rkio.engine.runner.kv_reuse import Fresh, KvContent, KvKey, Reuse, after_run, plan

KEY = KvKey(None, False)
HELD = KvContent("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n hello", KEY, 20)
NEXT = HELD.text + "<|im_end|>\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n"


def test_an_extending_prompt_sends_only_the_new_part() -> None:
    assert plan(HELD, NEXT, KEY, suffix_tokens=8, max_context_len=4096) == Reuse(NEXT[len(HELD.text):])


def test_nothing_held_means_a_full_prefill() -> None:
    assert plan(None, NEXT, KEY, suffix_tokens=8, max_context_len=4096) == Fresh("empty")


def test_a_diverging_or_equal_prompt_starts_over() -> None:
    edited = NEXT.replace("hi", "ho", 1)
    assert plan(HELD, edited, KEY, suffix_tokens=8, max_context_len=4096) == Fresh("diverged")
    assert plan(HELD, HELD.text, KEY, suffix_tokens=0, max_context_len=4096) == Fresh("diverged")
    # the reply as the client sent it back without the model's leading space is not the cache's text
    stripped = NEXT.replace("\n hello", "\nhello")
    assert plan(HELD, stripped, KEY, suffix_tokens=8, max_context_len=4096) == Fresh("diverged")


def test_another_adapter_or_thinking_switch_starts_over() -> None:
    for key in (KvKey("ada", False), KvKey(None, True)):
        assert plan(HELD, NEXT, key, suffix_tokens=8, max_context_len=4096) == Fresh("adapter")


def test_a_reuse_that_overflows_the_context_starts_over() -> None:
    assert plan(HELD, NEXT, KEY, suffix_tokens=8, max_context_len=27) == Fresh("context")
    assert plan(HELD, NEXT, KEY, suffix_tokens=8, max_context_len=28) == Reuse(NEXT[len(HELD.text):])


def test_only_a_reply_the_model_ended_is_remembered() -> None:
    assert after_run("p", KEY, " r", ended_by_model=True, tokens=5, max_context_len=100) == KvContent(
        "p r", KEY, 5)
    assert after_run("p", KEY, " r", ended_by_model=False, tokens=5, max_context_len=100) is None
    # a full cache may have been shifted by the runtime (n_keep): its content is no longer the text
    assert after_run("p", KEY, " r", ended_by_model=True, tokens=99, max_context_len=100) is None
