"""The IO API's engine side on real runners (simulator 1.2.3): leases with their own handle state, kept
history for its owner only, runtime calls, infer modes, load overrides, and dead leases after a crash."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from engine_sim import EngineFactory, SimModels, settle

import simkit
from rkio.engine.engine import ModelEngine
from rkio.engine.types import Done, GenerationRequest, HandleState, LoadOverrides, RuntimeCall, TokenChunk
from rkio.errors import InvalidRequest, RunnerCrashed, Unsupported
from rkio.runtime.base import ChatTemplateOverride, FunctionTools, GenerateParams

PIRATE = ChatTemplateOverride("arr matey ", "", "")
WEATHER = FunctionTools("", '[{"name": "weather", "parameters": {}}]', "")


async def run(engine: ModelEngine, lease: str, prompt: str, state: HandleState | None = None,
              **params: Any) -> tuple[str, Done]:
    request = GenerationRequest(model="m", lease=lease, runtime_input=GenerateParams(prompt=prompt, **params),
                                handle_state=state or HandleState(owner=lease))
    text, done = "", None
    async for event in engine.generate(request):
        if isinstance(event, TokenChunk):
            text += event.text
        elif isinstance(event, Done):
            done = event
    assert done is not None
    return text, done


def reply(templated: str, n: int, lora: str | None = None) -> str:
    return "".join(simkit.expected_reply(templated, n, lora))


async def test_two_leases_alternating_never_see_each_others_template_or_tools(
        engines: EngineFactory, models: SimModels) -> None:
    models.add("m", 64 * simkit.MiB)
    engine = await engines()
    one, two = await engine.open_lease("m"), await engine.open_lease("m")
    pirate, tools = HandleState(one, chat_template=PIRATE), HandleState(two, function_tools=WEATHER)
    for _ in range(2):
        text, _ = await run(engine, one, "hello [[tool]] [[n=6]]", pirate)
        assert text == reply("arr matey hello [[tool]] [[n=6]]", 6)  # its template, nobody's tools
        text, _ = await run(engine, two, "hello [[tool]] [[n=6]]", tools)
        assert "weather" in text and "arr" not in text and "matey" not in text
        text, _ = await run(engine, one, "plain [[n=4]]", HandleState(one))  # the lease dropped its template
        assert text == reply("plain [[n=4]]", 4)
    assert engine.status().loaded[0].leases == 2


async def test_keep_history_continues_the_conversation_for_its_owner_only(
        engines: EngineFactory, models: SimModels) -> None:
    models.add("m", 64 * simkit.MiB)
    engine = await engines()
    owner, other = await engine.open_lease("m"), await engine.open_lease("m")
    state = HandleState(owner, chat_template=PIRATE)
    text, _ = await run(engine, owner, "one two [[n=3]]", state, keep_history=True)
    assert text == reply("arr matey one two [[n=3]]", 3)
    size = RuntimeCall("get_kv_cache_size")
    [first] = await engine.runtime_call(owner, size)  # type: ignore[misc]
    assert first > 0
    # the second turn continues: the system prompt is not sent again, the cache grows
    text, _ = await run(engine, owner, "three [[n=3]]", state, keep_history=True)
    assert text == reply("three [[n=3]]", 3)
    [second] = await engine.runtime_call(owner, size)  # type: ignore[misc]
    assert second > first
    # while the owner keeps its history, every other request on the model waits in the queue
    waiting = asyncio.ensure_future(run(engine, other, "five [[n=2]]"))
    peek = asyncio.ensure_future(engine.runtime_call(other, size))
    await settle(engine, lambda status: status.queue_length == 2)
    text, _ = await run(engine, owner, "four [[n=2]]", state, keep_history=True)  # the owner overtakes
    assert text == reply("four [[n=2]]", 2)
    assert not waiting.done() and not peek.done()
    text, _ = await run(engine, owner, "six [[n=2]]", state)  # keep_history false: the hold ends
    text, _ = await waiting  # on a cleared cache, without the owner's template
    assert text == reply("five [[n=2]]", 2)
    [own] = await peek  # type: ignore[misc]
    assert 0 < own < second  # granted after its run: only its own turn is in the cache
    assert await engine.runtime_call(owner, size) == [0]  # the owner sees nothing of the other's
    await engine.runtime_call(owner, RuntimeCall("clear_kv_cache", {"keep_system_prompt": False}))
    assert await engine.runtime_call(other, size) == [own]  # a lease cannot clear a cache it does not own


async def test_a_closed_leases_history_never_reaches_the_next_owner(engines: EngineFactory,
                                                                    models: SimModels) -> None:
    models.add("m", 64 * simkit.MiB)
    engine = await engines()
    first = await engine.open_lease("m")
    await run(engine, first, "secret words here [[n=3]]", keep_history=True)
    await engine.close_lease(first)
    second = await engine.open_lease("m")
    state = HandleState(second, chat_template=PIRATE)
    text, _ = await run(engine, second, "hi [[n=3]]", state, keep_history=True)
    # a fresh conversation: the system prompt is sent again (only on an empty cache) ...
    assert text == reply("arr matey hi [[n=3]]", 3)
    size = RuntimeCall("get_kv_cache_size")
    after_handover = await engine.runtime_call(second, size)
    await engine.runtime_call(second, RuntimeCall("clear_kv_cache", {"keep_system_prompt": False}))
    await run(engine, second, "hi [[n=3]]", state, keep_history=True)
    assert after_handover == await engine.runtime_call(second, size)  # ... and the cache held this turn alone


async def test_hidden_states_and_logits_reach_done_outputs(engines: EngineFactory, models: SimModels) -> None:
    models.add("m", 64 * simkit.MiB)
    engine = await engines()
    lease = await engine.open_lease("m")
    text, done = await run(engine, lease, "alpha beta", mode="hidden")
    assert text == "" and done.outputs is not None and done.outputs.kind == "hidden"
    rows, width = done.outputs.shape
    assert width == 64 and rows > 0 and len(done.outputs.data) == rows * width * 4
    _, done = await run(engine, lease, "alpha beta", mode="logits")
    assert done.outputs is not None and done.outputs.shape == (1, 32000)


async def test_load_lora_stays_inside_the_models_directory(engines: EngineFactory, models: SimModels) -> None:
    models.add("m", 64 * simkit.MiB)
    (models.root / "m" / "style.lora").write_bytes(b"lora")
    engine = await engines()
    lease = await engine.open_lease("m")
    await engine.runtime_call(lease, RuntimeCall("load_lora", {
        "lora_adapter_path": "m/style.lora", "lora_adapter_name": "style", "scale": 0.5}))
    text, _ = await run(engine, lease, "red green [[n=3]]", lora="style")
    assert text == reply("red green [[n=3]]", 3, lora="style")
    with pytest.raises(InvalidRequest, match="inside the models directory"):
        await engine.runtime_call(lease, RuntimeCall("load_lora", {
            "lora_adapter_path": "../outside.lora", "lora_adapter_name": "x"}))


async def test_lease_overrides_are_used_shared_and_refused_when_they_conflict(
        engines: EngineFactory, models: SimModels) -> None:
    models.add("m", 64 * simkit.MiB)
    engine = await engines()
    wanted = LoadOverrides(max_new_tokens=5, n_keep=8)
    first = await engine.open_lease("m", wanted)
    info = engine.lease_info(first)
    assert (info.model, info.runtime) == ("m", "rkllm-1.2.1")
    assert (info.load.n_keep, info.load.max_new_tokens) == (8, 5)
    assert "keep_history" in info.features and "per-request sampling" not in info.features
    second = await engine.open_lease("m", wanted)
    assert engine.lease_info(second).load == info.load
    with pytest.raises(InvalidRequest, match="n_keep"):
        await engine.open_lease("m", LoadOverrides(n_keep=2))
    _, done = await run(engine, first, "a b c d e f g h [[n=40]]")
    assert done.usage.completion_tokens == 5 and done.finish_reason == "length"


async def test_a_crashed_runner_leaves_a_dead_lease(engines: EngineFactory, models: SimModels) -> None:
    models.add("m", 64 * simkit.MiB, fault="segv_at_token:1")
    engine = await engines()
    lease = await engine.open_lease("m")
    with pytest.raises(RunnerCrashed):
        await run(engine, lease, "boom [[n=5]]")
    with pytest.raises(RunnerCrashed):
        await engine.runtime_call(lease, RuntimeCall("get_kv_cache_size"))
    with pytest.raises(RunnerCrashed):
        engine.lease_info(lease)
    await engine.close_lease(lease)


async def test_what_rkllm_1_1_lacks_is_unsupported_and_the_runner_lives_on(
        engines: EngineFactory, models: SimModels, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RKIO_RKLLM_LIB", str(simkit.sim_library("1.1.4")))
    monkeypatch.setenv("RKIO_RKLLM_ABI", "1.1.4")
    models.add("m", 64 * simkit.MiB)
    engine = await engines()
    lease = await engine.open_lease("m")
    assert engine.lease_info(lease).runtime == "rkllm-1.1"
    pid = engine.status().loaded[0].pid
    with pytest.raises(Unsupported, match="set_chat_template"):
        await run(engine, lease, "x", HandleState(lease, chat_template=PIRATE))
    with pytest.raises(Unsupported, match="logits output"):
        await run(engine, lease, "x", mode="logits")
    with pytest.raises(Unsupported, match="get_kv_cache_size"):
        await engine.runtime_call(lease, RuntimeCall("get_kv_cache_size"))
    with pytest.raises(Unsupported, match="keep_history"):
        await run(engine, lease, "x", keep_history=True)
    text, _ = await run(engine, lease, "still here [[n=2]]")
    assert text == reply("still here [[n=2]]", 2)
    _, done = await run(engine, lease, "alpha", mode="hidden")  # 1.1 has hidden states (state 4)
    assert done.outputs is not None and done.outputs.shape[1] == 64
    assert engine.status().loaded[0].pid == pid
