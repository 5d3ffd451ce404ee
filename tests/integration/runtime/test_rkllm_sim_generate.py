"""Generation through the binding on every simulator flavour: text, UTF-8, limits, abort, pause."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from rkllm_sim_helpers import ABI_OF, collect

import simkit
from rkio.errors import Unsupported
from rkio.runtime.base import Feature, GenerateParams, LoadParams, Token
from rkio.runtime.rkllm import RkllmRuntime, detect_abi, runtime_version
from simkit.introspect import Sim


def test_library_is_detected_as_its_generation(library: Path, flavour: str) -> None:
    assert detect_abi(library) == ABI_OF[flavour]
    assert runtime_version(library) == flavour
    runtime = RkllmRuntime(str(library))
    assert (runtime.name, runtime.version) == (f"rkllm-{ABI_OF[flavour]}", flavour)
    assert (Feature.MULTI_INSTANCE in runtime.features) == (flavour in ("1.2.3", "1.3.0"))


def test_reply_text_matches_the_simulator_oracle(loaded: RkllmRuntime, sim: Sim) -> None:
    tokens: list[Token] = []
    prompt = "the quick brown fox"
    result = loaded.generate(GenerateParams(prompt=prompt), collect(tokens))
    assert [t.text for t in tokens] == simkit.expected_reply(prompt, 12)
    assert (result.finish, result.n_tokens) == ("stop", 12)
    assert all(t.token_id >= 0 for t in tokens)
    assert sim.last_run(loaded)["finish"] == "stop"
    if Feature.PERF_STATS in loaded.features:
        assert result.perf is not None and result.perf.generate_tokens == 12
        assert result.perf.prefill_tokens > 0 and result.perf.memory_usage_mb
    else:
        assert result.perf is None


def test_max_new_tokens_cuts_the_reply_with_length(runtime: RkllmRuntime, model: Callable[..., Path]) -> None:
    runtime.load(LoadParams(model_path=str(model()), max_context_len=512, max_new_tokens=5))
    tokens: list[Token] = []
    result = runtime.generate(GenerateParams(prompt="one two three [[n=40]]"), collect(tokens))
    assert (result.finish, result.n_tokens) == ("length", 5)
    assert "".join(t.text for t in tokens) == "".join(simkit.expected_reply("one two three", 5))


def test_multibyte_characters_split_across_callbacks_arrive_whole(loaded: RkllmRuntime) -> None:
    tokens: list[Token] = []
    result = loaded.generate(GenerateParams(prompt="alpha beta [[utf8]] [[n=24]]"), collect(tokens))
    assert result.n_tokens == 24
    # one token per whole character: the WAITING callbacks produce no token of their own
    assert [t.text for t in tokens] == simkit.expected_reply("alpha beta [[utf8]] [[n=24]]", 24)
    assert {"é", "中", "😀"} <= {t.text for t in tokens}
    assert len(tokens) < result.n_tokens


def test_sink_returning_false_aborts_the_run(runtime: RkllmRuntime, model: Callable[..., Path],
                                            sim: Sim) -> None:
    runtime.load(LoadParams(model_path=str(model()), max_context_len=1024, max_new_tokens=500))
    seen: list[Token] = []

    def sink(token: Token) -> bool:
        seen.append(token)
        return len(seen) < 3

    result = runtime.generate(GenerateParams(prompt="a b c [[n=400]]"), sink)
    assert result.finish == "abort"
    assert len(seen) == 3
    assert result.n_tokens < 10
    assert sim.last_run(runtime)["finish"] == "abort"
    assert not runtime.is_running()


def test_abort_from_another_thread_stops_a_slow_generation(runtime: RkllmRuntime,
                                                           model: Callable[..., Path], sim: Sim) -> None:
    runtime.load(LoadParams(model_path=str(model(token_us=20_000)), max_context_len=1024, max_new_tokens=500))
    first = threading.Event()
    outcome: list[object] = []

    def sink(token: Token) -> bool:
        first.set()
        return True

    def run() -> None:
        outcome.append(runtime.generate(GenerateParams(prompt="slow words here [[n=400]]"), sink))

    worker = threading.Thread(target=run)
    worker.start()
    assert first.wait(10)
    assert runtime.is_running()
    runtime.abort()
    worker.join(10)
    assert not worker.is_alive()
    result = outcome[0]
    assert getattr(result, "finish", None) == "abort"
    assert getattr(result, "n_tokens", 999) < 100
    assert sim.handle(runtime)["aborts"] >= 1
    assert not runtime.is_running()
    assert runtime.generate(GenerateParams(prompt="again [[n=2]]"), lambda t: True).finish == "stop"


def test_pause_keeps_the_kv_cache_where_supported(loaded: RkllmRuntime, sim: Sim) -> None:
    if Feature.PAUSE not in loaded.features:
        expected = f"pause from callback is not supported by runtime {loaded.name}"
        with pytest.raises(Unsupported, match=expected):
            loaded.pause()
        return
    seen: list[Token] = []

    def sink(token: Token) -> bool:
        seen.append(token)
        if len(seen) == 2:
            loaded.pause()
        return True

    result = loaded.generate(GenerateParams(prompt="keep this going [[n=30]]", keep_history=True), sink)
    assert (result.finish, result.n_tokens) == ("paused", 2)  # a pause asked for by the sink is immediate
    assert sim.last_run(loaded)["finish"] == "paused"
    assert loaded.kv_cache_size()[0] == sim.last_run(loaded)["kv_cache_len"] > 2


def test_two_generations_in_a_row_reuse_the_handle(loaded: RkllmRuntime, sim: Sim) -> None:
    for prompt in ("first turn", "second turn here"):
        tokens: list[Token] = []
        loaded.generate(GenerateParams(prompt=prompt), collect(tokens))
        assert "".join(t.text for t in tokens) == "".join(simkit.expected_reply(prompt, 12))
    assert sim.handle(loaded)["runs"] == 2


def test_an_exception_in_the_sink_aborts_the_run_and_reaches_the_caller(
    loaded: RkllmRuntime, sim: Sim
) -> None:
    def sink(token: Token) -> bool:
        raise ValueError("client went away")

    with pytest.raises(ValueError, match="client went away"):
        loaded.generate(GenerateParams(prompt="x y z [[n=200]]"), sink)
    assert sim.last_run(loaded)["finish"] == "abort"
    assert not loaded.is_running()
    assert loaded.generate(GenerateParams(prompt="x [[n=2]]"), lambda t: True).finish == "stop"
