"""LlamaCppRuntime with the real default model (SmolLM2 135M Instruct): a chat answer ends by itself, abort
is prompt, sampling is per request, greedy answers do not depend on the cache."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from generation import chat

from rkio.engine.types import ChatMessage
from rkio.errors import ContextLengthExceeded, Unsupported
from rkio.runtime.base import Feature, GenerateParams, LoadParams, LoraAdapter, Sampling, Token
from rkio.runtime.llamacpp import LlamaCppRuntime

SYSTEM = ChatMessage("system", "You are a helpful assistant. Give short, plain answers.")


def test_a_chat_answer_ends_by_itself(model: LlamaCppRuntime) -> None:
    text, result = chat(model, [SYSTEM, ChatMessage("user", "What is the capital of France?")])
    assert text == "The capital of France is Paris."
    assert result.finish == "stop" and result.n_tokens < 15
    assert result.perf is not None and result.perf.generate_tokens == result.n_tokens
    assert result.perf.prefill_tokens > 10 and result.perf.prefill_ms > 0


def test_the_models_own_template_is_used_and_its_end_marker_ends_a_turn(model: LlamaCppRuntime) -> None:
    template = model.chat_template()
    assert template is not None and template.name == "custom"  # the GGUF's tokenizer.chat_template
    assert template.stop_strings == ("<|im_end|>",)
    assert template.render([ChatMessage("user", "Hi")]).endswith("<|im_start|>assistant\n")
    llama = model._llama
    assert llama is not None
    [end] = llama.tokenize(b"<|im_end|>", add_bos=False, special=True)
    [word] = llama.tokenize(b"Paris", add_bos=False, special=True)
    assert model.is_end_of_turn(end) and not model.is_end_of_turn(word)


def test_a_multi_turn_conversation_answers_the_last_question(model: LlamaCppRuntime) -> None:
    conversation = [SYSTEM, ChatMessage("user", "What is the capital of Italy?"),
                    ChatMessage("assistant", "The capital of Italy is Rome."),
                    ChatMessage("user", "What is the capital of Japan?")]
    text, result = chat(model, conversation)
    assert "Tokyo" in text and "<|im" not in text and result.finish == "stop"


def test_temperature_zero_is_deterministic(model: LlamaCppRuntime) -> None:
    question = "Name three colours."
    first, _ = chat(model, question, max_new_tokens=20)
    second, _ = chat(model, question, max_new_tokens=20)
    assert first == second and first


def test_per_request_seed_reproduces_a_sampled_answer(model: LlamaCppRuntime) -> None:
    sampling = Sampling(temperature=1.0, top_k=64, top_p=0.95, repeat_penalty=1.0, seed=1234)
    question = "Write one sentence about the sea."
    first, _ = chat(model, question, sampling=sampling, max_new_tokens=20)
    second, _ = chat(model, question, sampling=sampling, max_new_tokens=20)
    greedy, _ = chat(model, question, max_new_tokens=20)
    assert first == second
    other = [chat(model, question, sampling=Sampling(temperature=1.5, seed=s), max_new_tokens=20)[0]
             for s in (1, 2, 3)]
    assert len({first, greedy, *other}) > 1  # sampling settings do reach the sampler


def test_max_new_tokens_per_request(model: LlamaCppRuntime) -> None:
    _, result = chat(model, "Tell me a long story about a dragon.", max_new_tokens=5)
    assert result.finish == "length" and result.n_tokens == 5


def test_count_tokens_matches_what_the_prompt_costs(model: LlamaCppRuntime) -> None:
    template = model.chat_template()
    assert template is not None
    prompt = template.render([ChatMessage("user", "How many tokens is this?")])
    counted = model.count_tokens(prompt)
    result = model.generate(GenerateParams(prompt=prompt, max_new_tokens=1), lambda t: True)
    assert result.perf is not None and counted == result.perf.prefill_tokens
    assert model.count_tokens("hello") == 1


def test_sink_returning_false_stops(model: LlamaCppRuntime) -> None:
    seen: list[Token] = []

    def sink(token: Token) -> bool:
        seen.append(token)
        return len(seen) < 3

    template = model.chat_template()
    assert template is not None
    prompt = template.render([ChatMessage("user", "Count from 1 to 100.")])
    result = model.generate(GenerateParams(prompt=prompt, max_new_tokens=50), sink)
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


def test_destroy_releases_the_model(model_path: Path) -> None:
    runtime = LlamaCppRuntime()
    before = rss_bytes()
    runtime.load(LoadParams(model_path=str(model_path), max_context_len=512, n_threads=1))
    runtime.generate(GenerateParams(prompt="Hello", max_new_tokens=4), lambda t: True)
    loaded = rss_bytes()
    runtime.destroy()
    freed = rss_bytes()
    assert loaded - before > 60 << 20  # the weights (~94 MiB) are mapped and read
    assert loaded - freed > 60 << 20


def test_features_and_unsupported_calls() -> None:
    runtime = LlamaCppRuntime()
    assert runtime.name.startswith("llamacpp-")
    assert {Feature.PER_RUN_SAMPLING, Feature.PER_RUN_MAX_NEW_TOKENS} <= runtime.features
    assert Feature.KEEP_HISTORY not in runtime.features
    with pytest.raises(Unsupported, match="LoRA adapters is not supported by runtime llamacpp"):
        runtime.load_lora(LoraAdapter(path="x", name="x"))
