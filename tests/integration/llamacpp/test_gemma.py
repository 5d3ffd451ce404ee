"""LlamaCppRuntime with the real Gemma 3 270M: answers end, abort is prompt, sampling is per request."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rkio.engine.types import ChatMessage
from rkio.errors import ContextLengthExceeded, Unsupported
from rkio.runtime.base import (
    Feature,
    GenerateParams,
    GenerationResult,
    LoadParams,
    LoraAdapter,
    Sampling,
    Token,
)
from rkio.runtime.chat import ChatTemplate
from rkio.runtime.llamacpp import LlamaCppRuntime

DATA = Path(__file__).resolve().parents[2] / "unit" / "chat" / "data"


def chat(runtime: LlamaCppRuntime, messages: list[ChatMessage] | str,
         **params: object) -> tuple[str, GenerationResult]:
    template = runtime.chat_template()
    assert template is not None
    if isinstance(messages, str):
        messages = [ChatMessage("user", messages)]
    return complete(runtime, template.render(messages), **params)


def complete(runtime: LlamaCppRuntime, prompt: str, **params: object) -> tuple[str, GenerationResult]:
    tokens: list[Token] = []

    def sink(token: Token) -> bool:
        tokens.append(token)
        return True

    result = runtime.generate(GenerateParams(prompt=prompt, **params), sink)  # type: ignore[arg-type]
    return "".join(t.text for t in tokens), result


def test_end_of_sequence_stops_the_generation_by_itself(gemma: LlamaCppRuntime) -> None:
    # The default model is Gemma 3 270M *pretrained* (not instruction-tuned): it ends documents with <eos>
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


def test_chat_through_the_models_template_answers(gemma: LlamaCppRuntime) -> None:
    conversation = [ChatMessage("user", "What is the capital of Italy?"), ChatMessage("assistant", "Rome"),
                    ChatMessage("user", "What is the capital of France?")]
    text, _ = chat(gemma, conversation, max_new_tokens=8)
    assert text.startswith("Paris")
    assert "<start_of_turn>" not in text and "<end_of_turn>" not in text


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


def test_temperature_zero_is_deterministic(gemma: LlamaCppRuntime) -> None:
    question = "Name three colours."
    first, _ = chat(gemma, question, max_new_tokens=20)
    second, _ = chat(gemma, question, max_new_tokens=20)
    assert first == second and first


def test_per_request_seed_reproduces_a_sampled_answer(gemma: LlamaCppRuntime) -> None:
    sampling = Sampling(temperature=1.0, top_k=64, top_p=0.95, repeat_penalty=1.0, seed=1234)
    question = "Write one sentence about the sea."
    first, _ = chat(gemma, question, sampling=sampling, max_new_tokens=20)
    second, _ = chat(gemma, question, sampling=sampling, max_new_tokens=20)
    greedy, _ = chat(gemma, question, max_new_tokens=20)
    assert first == second
    other = [chat(gemma, question, sampling=Sampling(temperature=1.5, seed=s), max_new_tokens=20)[0]
             for s in (1, 2, 3)]
    assert len({first, greedy, *other}) > 1  # sampling settings do reach the sampler


def test_max_new_tokens_per_request(gemma: LlamaCppRuntime) -> None:
    _, result = chat(gemma, "Tell me a long story about a dragon.", max_new_tokens=5)
    assert result.finish == "length" and result.n_tokens == 5


def test_count_tokens_matches_what_the_prompt_costs(gemma: LlamaCppRuntime) -> None:
    template = gemma.chat_template()
    assert template is not None
    prompt = template.render([ChatMessage("user", "How many tokens is this?")])
    counted = gemma.count_tokens(prompt)
    result = gemma.generate(GenerateParams(prompt=prompt, max_new_tokens=1), lambda t: True)
    assert result.perf is not None and counted == result.perf.prefill_tokens
    assert gemma.count_tokens("hello") == 1


def test_multibyte_characters_arrive_whole(gemma: LlamaCppRuntime) -> None:
    text, _ = chat(gemma, "Repeat exactly: 日本語のテキスト 🚀 café", max_new_tokens=25)
    assert "\ufffd" not in text
    assert any("\u3040" <= ch <= "\u9fff" for ch in text)


def test_sink_returning_false_stops(gemma: LlamaCppRuntime) -> None:
    seen: list[Token] = []

    def sink(token: Token) -> bool:
        seen.append(token)
        return len(seen) < 3

    template = gemma.chat_template()
    assert template is not None
    prompt = template.render([ChatMessage("user", "Count from 1 to 100.")])
    result = gemma.generate(GenerateParams(prompt=prompt, max_new_tokens=50), sink)
    assert result.finish == "abort" and len(seen) == 3


def test_abort_from_another_thread_stops_promptly(endless: LlamaCppRuntime) -> None:
    flowing = threading.Event()
    aborted_at: list[float] = []

    def sink(token: Token) -> bool:
        flowing.set()
        return True

    def abort_soon() -> None:
        flowing.wait(30)
        assert endless.is_running()
        aborted_at.append(time.perf_counter())
        endless.abort()

    thread = threading.Thread(target=abort_soon)
    thread.start()
    result = endless.generate(GenerateParams(prompt="Once upon a time"), sink)
    thread.join()
    assert result.finish == "abort" and aborted_at
    assert not endless.is_running()
    assert result.n_tokens < 100  # stopped long before the context filled (behaviour, not a timing)


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


def test_a_shared_prefix_is_not_evaluated_again(gemma: LlamaCppRuntime) -> None:
    history = [ChatMessage("user", "Tell me about Paris. " * 30)]
    _, first = chat(gemma, history, max_new_tokens=1)
    _, second = chat(gemma, [*history, ChatMessage("assistant", "Paris is a city."),
                             ChatMessage("user", "And Rome?")], max_new_tokens=1)
    assert first.perf is not None and second.perf is not None
    assert second.perf.prefill_tokens > first.perf.prefill_tokens
    assert second.perf.prefill_ms < first.perf.prefill_ms


def test_full_context_ends_with_length_and_too_long_prompts_are_refused(endless: LlamaCppRuntime) -> None:
    result = endless.generate(GenerateParams(prompt="Once upon a time"), lambda t: True)
    assert result.finish == "length"
    assert result.perf is not None and result.perf.prefill_tokens + result.n_tokens == 128
    with pytest.raises(ContextLengthExceeded):
        endless.generate(GenerateParams(prompt="word " * 200), lambda t: True)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_destroy_releases_the_model(gemma_path: Path) -> None:
    runtime = LlamaCppRuntime()
    before = rss_bytes()
    runtime.load(LoadParams(model_path=str(gemma_path), max_context_len=512, n_threads=1))
    runtime.generate(GenerateParams(prompt="Hello", max_new_tokens=4), lambda t: True)
    loaded = rss_bytes()
    runtime.destroy()
    freed = rss_bytes()
    assert loaded - before > 150 << 20
    assert loaded - freed > 150 << 20


def test_features_and_unsupported_calls() -> None:
    runtime = LlamaCppRuntime()
    assert runtime.name.startswith("llamacpp-")
    assert {Feature.PER_RUN_SAMPLING, Feature.PER_RUN_MAX_NEW_TOKENS} <= runtime.features
    assert Feature.KEEP_HISTORY not in runtime.features
    with pytest.raises(Unsupported, match="LoRA adapters is not supported by runtime llamacpp"):
        runtime.load_lora(LoraAdapter(path="x", name="x"))
