"""Engine.runtime_call, open_lease overrides and lease_info on the shell with fake runners (no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from engine_fakes import spec
from fake_runner import FakeFactory, FakeRegistry

from rkio.config import Settings
from rkio.engine.engine import ModelEngine
from rkio.engine.events import TokenStall
from rkio.engine.types import GenerationRequest, HandleState, LoadOverrides, RuntimeCall
from rkio.errors import GenerationTimeout, InvalidRequest, RunnerCrashed
from rkio.runtime.base import GenerateParams, PromptCacheParams
from rkio.units import GiB

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[ModelEngine, FakeFactory, Path]]:
    factory = FakeFactory()
    models = tmp_path / "models"
    (models / "a").mkdir(parents=True)
    (models / "a" / "style.lora").write_bytes(b"x")
    settings = Settings(memory_budget=16 * GiB, state_dir=tmp_path, models_dir=models)
    engine = ModelEngine(settings, FakeRegistry(spec("a")), factory, mem_probe=lambda: None)  # type: ignore[arg-type]
    await engine.start()
    yield engine, factory, models
    await engine.stop(grace=0)


async def test_a_call_runs_in_the_leases_runner_with_the_lease_as_kv_owner(env: Any) -> None:
    engine, factory, models = env
    lease = await engine.open_lease("a")
    assert await engine.runtime_call(lease, RuntimeCall("get_kv_cache_size")) == [1]
    await engine.runtime_call(lease, RuntimeCall("load_lora", {"lora_adapter_path": "a/style.lora",
                                                               "lora_adapter_name": "s"}))
    runner = factory.last("a")
    assert runner.calls[0] == ("get_kv_cache_size", {}, lease)
    op, args, owner = runner.calls[1]
    assert (op, owner) == ("load_lora", lease)
    assert args["lora_adapter_path"] == str((models / "a/style.lora").resolve())
    sup = engine._sup
    await sup.until(lambda: not sup.scheduler.running)  # each call held and released the runner


async def test_a_call_waits_for_the_running_generation(env: Any) -> None:
    engine, factory, _ = env
    lease = await engine.open_lease("a")
    runner = factory.last("a")
    gate = runner.gate = asyncio.Event()
    gate.set()  # one token, then the generation waits at the gate
    request = GenerationRequest(model="a", lease=lease, runtime_input=GenerateParams(prompt="x"),
                                handle_state=HandleState(lease))
    stream = engine.generate(request)
    await stream.__anext__()  # the first token: the generation holds the runner
    call = asyncio.ensure_future(engine.runtime_call(lease, RuntimeCall("get_kv_cache_size")))
    await engine._sup.until(lambda: engine.status().queue_length == 1)
    assert not call.done() and runner.calls == []
    runner.gate = None
    gate.set()
    _ = [event async for event in stream]
    assert await call == [1]
    assert runner.generations[0].handle_state == HandleState(lease)
    assert runner.generations[0].messages is None and runner.generations[0].params.prompt == "x"


async def test_bad_calls_and_unknown_leases_are_invalid(env: Any) -> None:
    engine, _, _ = env
    lease = await engine.open_lease("a")
    with pytest.raises(InvalidRequest, match="inside the models directory"):
        await engine.runtime_call(lease, RuntimeCall("load_lora", {"lora_adapter_path": "../../etc/passwd",
                                                                   "lora_adapter_name": "x"}))
    with pytest.raises(InvalidRequest, match="unknown runtime call"):
        await engine.runtime_call(lease, RuntimeCall("rkllm_destroy"))  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="no open lease"):
        await engine.runtime_call("nope", RuntimeCall("get_kv_cache_size"))


async def test_lease_info_reports_the_parameters_in_effect_and_crashes_kill_the_lease(env: Any) -> None:
    engine, factory, _ = env
    lease = await engine.open_lease("a", LoadOverrides(n_keep=4, max_context_len=2048))
    info = engine.lease_info(lease)
    assert (info.model, info.runtime, info.load.n_keep) == ("a", "rkllm-fake", 4)
    assert info.load.max_context_len == 2048 and "clear_kv_cache" in info.features
    runner = factory.last("a")
    runner.crash_at = 0
    with pytest.raises(RunnerCrashed):
        _ = [e async for e in engine.generate(GenerationRequest(model="a", prompt="x", lease=lease))]
    with pytest.raises(RunnerCrashed):
        await engine.runtime_call(lease, RuntimeCall("get_kv_cache_size"))
    with pytest.raises(RunnerCrashed):
        engine.lease_info(lease)


async def test_prompt_cache_paths_stay_inside_the_models_directory(env: Any) -> None:
    engine, factory, models = env
    lease = await engine.open_lease("a")
    cache = PromptCacheParams(save=True, path="chat.cache")
    state = HandleState(lease, prompt_cache_path=str(models / "a/old.cache"))
    request = GenerationRequest(model="a", lease=lease, handle_state=state,
                                runtime_input=GenerateParams(prompt="x", prompt_cache=cache))
    _ = [e async for e in engine.generate(request)]
    gen = factory.last("a").generations[0]
    assert gen.params.prompt_cache is not None and gen.handle_state is not None
    caches = (models.parent / "prompt-cache").resolve()  # <state dir>/prompt-cache
    assert gen.params.prompt_cache.path == str(caches / "chat.cache") and caches.is_dir()
    assert gen.handle_state.prompt_cache_path == str((models / "a/old.cache").resolve())
    escaping = replace(request, handle_state=HandleState(lease, prompt_cache_path="/etc/shadow"))
    with pytest.raises(InvalidRequest, match="prompt_cache_path must name a file in"):
        _ = [e async for e in engine.generate(escaping)]


async def test_a_lease_survives_a_managed_re_init_and_keeps_its_parameters(env: Any) -> None:
    engine, factory, _ = env
    lease = await engine.open_lease("a", LoadOverrides(max_context_len=2048, n_keep=4))
    factory.load_gate = asyncio.Event()  # hold the reload
    async def http_request() -> list[Any]:
        return [e async for e in engine.generate(GenerationRequest(model="a", prompt="x"))]

    http = asyncio.ensure_future(http_request())
    await engine._sup.until(lambda: engine.status().loaded and engine.status().loaded[0].state == "loading")
    info = engine.lease_info(lease)  # the instance is being replaced, the lease is not dead
    assert (info.runtime, info.load.n_keep, info.load.max_context_len) == ("rkllm-fake", 4, 4096)
    factory.load_gate.set()
    await http
    assert len(factory.runners) == 2 and factory.runners[1].load.n_keep == 4
    assert engine.lease_info(lease).load.max_context_len == 4096


async def test_a_call_the_runtime_hangs_in_times_out_kills_the_runner_and_the_lease(env: Any) -> None:
    engine, factory, _ = env
    lease = await engine.open_lease("a")
    runner = factory.last("a")
    runner.call_gate, runner.abort_ok = asyncio.Event(), False  # never answers, ignores the abort
    call = asyncio.ensure_future(engine.runtime_call(lease, RuntimeCall("clear_kv_cache")))
    sup = engine._sup
    await sup.until(lambda: bool(sup.scheduler.running))
    [rid] = sup.scheduler.running
    sup.post(TokenStall(rid, first_token=True))  # what the call's watchdog posts at its deadline
    with pytest.raises(GenerationTimeout):
        await call
    assert runner.killed
    with pytest.raises(RunnerCrashed):  # the lease died with its runner
        await engine.runtime_call(lease, RuntimeCall("get_kv_cache_size"))
