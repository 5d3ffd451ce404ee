"""The runner loop (RunnerService) against a fake runtime, over real frames on a socketpair."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import replace

from runner_fakes import FakeRuntime, Peer, make_spec

from rkio.engine.runner.frames import (
    Abort,
    Call,
    CallResult,
    Done,
    Error,
    Generate,
    Loaded,
    Memory,
    Stop,
    Stopped,
    Tokens,
)
from rkio.engine.runner.messages import RunnerGeneration
from rkio.engine.types import ChatMessage, HandleState
from rkio.runtime.base import ChatTemplateOverride, Feature, GenerateParams


def text_of(frames: list) -> str:
    return "".join(f.text for f in frames if isinstance(f, Tokens))


def generate(peer: Peer, prompt: str, **kw: object) -> list:
    params = GenerateParams(prompt=prompt, max_new_tokens=kw.pop("max_new_tokens", None))  # type: ignore[arg-type]
    peer.send(Generate(RunnerGeneration(params=params, **kw)))  # type: ignore[arg-type]
    return peer.recv_until(Done | Error)  # type: ignore[arg-type]


def test_load_reports_runtime_memory_and_disables_runtime_template(peer: Peer) -> None:
    loaded = peer.load()
    assert isinstance(loaded, Loaded)
    assert loaded.runtime == "fake-1"
    assert loaded.features == [Feature.CHAT_TEMPLATE.value]
    assert loaded.memory is not None and loaded.memory.rss_bytes > 0
    assert peer.runtime.calls == ["load", "template '' ''"]


def test_lora_adapters_of_the_spec_are_loaded(peer: Peer) -> None:
    peer.load(make_spec(lora_adapters=(("style", "/models/style.rkllm", 1.0),)))
    assert "lora style" in peer.runtime.calls


def test_generation_streams_text_then_done(peer: Peer) -> None:
    peer.load()
    frames = generate(peer, "[[n=5]] red green")
    assert text_of(frames) == "red green red green red"
    done = frames[-1]
    assert isinstance(done, Done)
    assert (done.finish, done.completion_tokens) == ("stop", 5)
    assert done.stop_sequence is None  # the reply ended by itself
    assert done.prompt_tokens > 0
    assert done.memory is not None and done.memory.hwm_bytes >= done.memory.rss_bytes > 0


def test_stop_string_is_cut_with_everything_after_it(peer: Peer) -> None:
    peer.load()
    frames = generate(peer, "[[n=9]] alpha beta gamma", stop=("ta gam",))
    assert text_of(frames) == "alpha be"
    done = frames[-1]
    assert isinstance(done, Done) and done.finish == "stop"
    assert done.completion_tokens == 3  # the runtime was stopped at the token completing the stop string
    assert done.stop_sequence == "ta gam"  # so an API can tell a stop sequence from the end of the turn


def test_max_new_tokens_is_enforced_when_the_runtime_cannot(peer: Peer) -> None:
    peer.load()
    frames = generate(peer, "[[n=9]] one two", max_new_tokens=2)
    assert text_of(frames) == "one two"
    assert isinstance(frames[-1], Done) and frames[-1].finish == "length"


def test_runtime_error_is_reported_after_a_stderr_sync_line_and_runner_survives(peer: Peer) -> None:
    peer.load()
    frames = generate(peer, "[[n=9]] [[fail]] a")
    error = frames[-1]
    assert isinstance(error, Error)
    assert (error.kind, error.message, error.marker) == ("RuntimeFailure", "rkllm_run failed", 1)
    assert text_of(frames) == "a a"
    memory = peer.recv()
    assert isinstance(memory, Memory) and memory.memory.rss_bytes > 0
    again = generate(peer, "[[n=2]] b")
    assert text_of(again) == "b b"
    peer.send(Stop())
    peer.recv_until(Stopped)
    peer.thread.join(5)
    assert "rkio-runner: sync 1\n" in peer.stderr()


def test_abort_ends_a_blocked_generation_with_finish_abort(peer: Peer) -> None:
    peer.load()
    peer.send(Generate(RunnerGeneration(params=GenerateParams(prompt="[[n=50]] [[block]] w"))))
    first = peer.recv()
    assert isinstance(first, Tokens) and first.text == "w"
    peer.send(Abort())
    done = peer.recv_until(Done)[-1]
    assert isinstance(done, Done) and done.finish == "abort"
    assert "abort" in peer.runtime.calls


def test_stop_destroys_the_handle_and_exits_cleanly(peer: Peer) -> None:
    peer.load()
    peer.send(Stop())
    assert isinstance(peer.recv(), Stopped)
    peer.thread.join(5)
    assert peer.exit_code == 0
    assert peer.runtime.calls[-1] == "destroy"


def test_gateway_going_away_mid_generation_aborts_and_destroys() -> None:
    peer = Peer(FakeRuntime())
    peer.load()
    peer.send(Generate(RunnerGeneration(params=GenerateParams(prompt="[[n=50]] [[block]] w"))))
    assert isinstance(peer.recv(), Tokens)
    peer.sock.close()
    peer.thread.join(5)
    assert not peer.thread.is_alive()
    assert peer.runtime.calls[-2:] == ["abort", "destroy"]


def test_a_runtime_deaf_to_abort_after_the_gateway_went_away_ends_the_process() -> None:
    class DeafRuntime(FakeRuntime):
        def abort(self) -> None:
            self.calls.append("abort")  # a hung NPU job: the abort changes nothing

    orphaned = threading.Event()
    peer = Peer(DeafRuntime(), orphan_exit_s=0, orphaned=orphaned.set)
    peer.load()
    peer.send(Generate(RunnerGeneration(params=GenerateParams(prompt="[[n=50]] [[block]] w"))))
    assert isinstance(peer.recv(), Tokens)
    peer.sock.close()
    assert orphaned.wait(5), "the runner would outlive its gateway forever"
    assert peer.thread.is_alive() and peer.runtime.calls[-1] == "abort"
    peer.runtime._abort.set()  # let the fake return so the thread ends
    peer.thread.join(5)


def test_load_failure_reports_and_exits_with_status_3() -> None:
    peer = Peer(FakeRuntime(fail_load=True))
    error = peer.load()
    assert isinstance(error, Error)
    assert (error.kind, error.message) == ("LoadFailed", "rkllm_init failed")
    peer.thread.join(5)
    assert peer.exit_code == 3
    assert "rkio-runner: sync 1" in peer.stderr()


def test_chat_messages_are_rendered_with_the_template_and_its_stop_strings_apply(peer: Peer) -> None:
    peer.load()
    messages = (ChatMessage("user", "[[n=40]] hello"),)
    frames = generate(peer, "", messages=messages, system_prompt="be brief")
    prompt = peer.runtime.prompts[-1]
    assert "<|im_start|>system\nbe brief<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    # the fake echoes the prompt's words; ChatML's end marker must cut the reply before it
    text = text_of(frames)
    assert "<|im_end|>" not in text
    assert text.startswith("<|im_start|>system be")
    assert isinstance(frames[-1], Done) and frames[-1].finish == "stop"


def test_conversation_system_message_wins_over_the_default(peer: Peer) -> None:
    peer.load()
    messages = (ChatMessage("system", "custom"), ChatMessage("user", "[[n=1]] hi"))
    generate(peer, "", messages=messages, system_prompt="default")
    assert "default" not in peer.runtime.prompts[-1]
    assert "custom" in peer.runtime.prompts[-1]


def test_prompt_tokens_come_from_perf_when_reported() -> None:
    peer = Peer(FakeRuntime(prefill_tokens=77))
    peer.load()
    done = generate(peer, "[[n=1]] x")[-1]
    assert isinstance(done, Done) and done.prompt_tokens == 77
    assert done.memory is not None and done.memory.runtime_mb == 123.5


def test_unknown_template_is_an_invalid_request_not_a_crash(peer: Peer) -> None:
    peer.load(replace(make_spec(), chat_template="{% if %}"))
    error = generate(peer, "", messages=(ChatMessage("user", "x"),))[-1]
    assert isinstance(error, Error) and error.kind == "InvalidRequest"
    assert isinstance(generate(peer, "[[n=1]] ok")[-1], Done)


def test_a_lease_state_reaches_the_handle_once_and_http_runs_get_it_undone(peer: Peer) -> None:
    peer.load()
    state = HandleState("L1", chat_template=ChatTemplateOverride("sys", "<u>", "</u>"))
    for _ in range(2):
        peer.send(Generate(RunnerGeneration(params=GenerateParams(prompt="[[n=1]] a"), handle_state=state)))
        assert isinstance(peer.recv_until(Done | Error)[-1], Done)  # type: ignore[arg-type]
    assert peer.runtime.calls.count("template 'sys' '<u>'") == 1  # applied once, not per run
    assert isinstance(generate(peer, "[[n=1]] b")[-1], Done)  # an HTTP run: rkio's empty template again
    assert peer.runtime.calls[-1] == "template '' ''"


def test_a_runtime_call_is_answered_and_one_the_runtime_lacks_is_unsupported(peer: Peer) -> None:
    peer.load()
    peer.send(Call("load_lora", {"lora_adapter_path": "/m/a", "lora_adapter_name": "ad"}, "L1"))
    assert peer.recv() == CallResult(None)
    assert "lora ad" in peer.runtime.calls
    peer.send(Call("get_kv_cache_size", {}, "L1"))
    error = peer.recv_until(Error)[-1]
    assert isinstance(error, Error) and (error.kind, error.feature) == ("Unsupported", "get_kv_cache_size")
    assert isinstance(generate(peer, "[[n=2]] still alive")[-1], Done)  # the runner survived


REUSE_FEATURES = (Feature.CHAT_TEMPLATE, Feature.KEEP_HISTORY, Feature.CLEAR_KV_CACHE, Feature.PERF_STATS)


def chat(peer: Peer, *messages: ChatMessage) -> list:
    peer.send(Generate(RunnerGeneration(params=GenerateParams(), messages=messages)))
    return peer.recv_until(Done | Error)  # type: ignore[arg-type]


@contextlib.contextmanager
def serving(runtime: FakeRuntime) -> Iterator[Peer]:
    peer = Peer(runtime)
    try:
        peer.load()
        yield peer
    finally:
        peer.sock.close()
        peer.thread.join(5)


def test_a_chat_turn_extending_the_cache_sends_only_the_new_messages() -> None:
    runtime = FakeRuntime(REUSE_FEATURES, prefill_tokens=9)
    with serving(runtime) as peer:
        first = ChatMessage("user", "[[n=2]] hi there")
        reply = text_of(chat(peer, first))
        chat(peer, first, ChatMessage("assistant", reply), ChatMessage("user", "[[n=2]] more"))
        assert runtime.kept == [True, True]
        assert runtime.prompts[1].startswith("<|im_end|>") and "hi there" not in runtime.prompts[1]
        assert runtime.calls.count("clear_kv") == 0  # the first run found the cache empty
        # another conversation: the cache is cleared and the whole prompt prefilled
        chat(peer, ChatMessage("user", "[[n=2]] someone else"))
        assert runtime.calls.count("clear_kv") == 1 and "someone else" in runtime.prompts[2]
        assert runtime.prompts[2].startswith("<|im_start|>user")


def test_no_reuse_without_a_count_of_the_cache() -> None:
    runtime = FakeRuntime(REUSE_FEATURES[:3])  # like 1.2.0: no perf, no get_kv_cache_size
    with serving(runtime) as peer:
        first = ChatMessage("user", "[[n=2]] hi there")
        reply = text_of(chat(peer, first))
        chat(peer, first, ChatMessage("assistant", reply), ChatMessage("user", "more"))
        assert runtime.kept == [False, False] and "hi there" in runtime.prompts[1]
