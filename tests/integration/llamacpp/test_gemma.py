"""LlamaCppRuntime with Gemma 3 270M, a *base* model: raw completion ends at <eos>, a GGUF without a chat
template gets the preset its vocabulary implies, and long prompts prefill in abortable, cached slices."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from generation import chat, complete

from rkio.engine.types import ChatMessage
from rkio.runtime.base import GenerateParams
from rkio.runtime.chat import ChatTemplate
from rkio.runtime.llamacpp import LlamaCppRuntime

DATA = Path(__file__).resolve().parents[2] / "unit" / "chat" / "data"


def test_end_of_sequence_stops_the_generation_by_itself(gemma: LlamaCppRuntime) -> None:
    # Gemma 3 270M *pretrained* (not instruction-tuned) ends documents with <eos>
    # but never predicts <end_of_turn>. A finished JSON object is a document end it reliably sees.
    text, result = complete(gemma, '{"name": "Paris", "country": "France"}', max_new_tokens=100)
    assert result.finish == "stop"
    assert result.n_tokens < 10 and "<eos>" not in text
    assert result.perf is not None and result.perf.generate_tokens == result.n_tokens
    assert result.perf.prefill_tokens > 5 and result.perf.prefill_ms > 0


def test_end_of_turn_markers_end_an_answer(gemma: LlamaCppRuntime) -> None:
    llama = gemma._llama
    assert llama is not None
    for marker in ("<end_of_turn>", "<eos>"):
        [token] = llama.tokenize(marker.encode(), add_bos=False, special=True)
        assert gemma.is_end_of_turn(token)
    [word] = llama.tokenize(b"Paris", add_bos=False, special=True)
    assert not gemma.is_end_of_turn(word)


def test_the_model_template_is_gemmas(gemma: LlamaCppRuntime) -> None:
    # this GGUF carries no tokenizer.chat_template: the runtime recognises Gemma by its vocabulary
    template = gemma.chat_template()
    assert template is not None and template.name in ("custom", "gemma")
    assert template.bos_token == "<bos>" and template.eos_token == "<eos>"
    assert template.stop_strings[:1] == ("<end_of_turn>",)
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"),
                ChatMessage("assistant", "Hello"), ChatMessage("user", "Bye")]
    preset = ChatTemplate.from_source("gemma", bos_token="<bos>")
    assert template.render(messages) == preset.render(messages)
    # and renders exactly as Google's own template (the unit tests' copy of tokenizer_config.json's)
    copy = ChatTemplate.from_source((DATA / "gemma3.jinja").read_text(), bos_token="<bos>")
    assert copy.render(messages) == template.render(messages)


# Long prompts and multibyte text: on this model, whose prefill is fast on the plain CPU path
# (SmolLM2's Q4_1 prefills slowly in small batches there).

def test_multibyte_characters_arrive_whole(gemma: LlamaCppRuntime) -> None:
    text, _ = chat(gemma, "Repeat exactly: 日本語のテキスト 🚀 café", max_new_tokens=25)
    assert "\ufffd" not in text
    assert any("\u3040" <= ch <= "\u9fff" for ch in text)


def test_abort_during_a_long_prefill_is_prompt(gemma: LlamaCppRuntime) -> None:
    prompt = "The quick brown fox jumps over the lazy dog. " * 90  # ~900 tokens: 10+ s of prefill here
    timer = threading.Timer(0.3, gemma.abort)
    timer.start()
    result = gemma.generate(GenerateParams(prompt=prompt, max_new_tokens=5), lambda t: True)
    timer.join()
    assert result.finish == "abort" and result.n_tokens == 0
    # the prefill stopped at the next chunk boundary: the cache holds only part of the prompt (not a timing)
    prompt_tokens = gemma.count_tokens(prompt)
    assert prompt_tokens is not None and gemma.kv_cache_size()[0] < prompt_tokens
    # the partly filled cache does not confuse the next generation
    text, after = chat(gemma, "What is the capital of France?", max_new_tokens=3)
    assert after.finish == "length" and text


def test_a_shared_prefix_is_not_evaluated_again(gemma: LlamaCppRuntime,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    llama = gemma._llama
    assert llama is not None
    evaluated: list[int] = []
    real_eval = llama.eval
    monkeypatch.setattr(llama, "eval", lambda tokens: (evaluated.append(len(tokens)), real_eval(tokens))[1])
    history = [ChatMessage("user", "Tell me about Paris. " * 30)]
    _, first = chat(gemma, history, max_new_tokens=1)
    first_evaluated, evaluated[:] = sum(evaluated), []
    _, second = chat(gemma, [*history, ChatMessage("assistant", "Paris is a city."),
                             ChatMessage("user", "And Rome?")], max_new_tokens=1)
    assert first.perf is not None and second.perf is not None
    assert second.perf.prefill_tokens > first.perf.prefill_tokens
    # only the new turn is evaluated (counted in tokens, not timed); the first prompt was new but for the
    # chat template's opening, which an earlier test's prompt may have left in the cache
    assert first.perf.prefill_tokens - 10 < first_evaluated <= first.perf.prefill_tokens
    assert sum(evaluated) < second.perf.prefill_tokens - first.perf.prefill_tokens + 5
