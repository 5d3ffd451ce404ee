"""The rkllm functions over the fake engine: every nano generation's forms, leases, state and streaming."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fake_engine import FakeEngine
from rpc_helpers import FakeClock, http_peer, make_service, push_peer

from loop_steps import run_ready_callbacks
from rkio.api.jsonrpc.service import RpcService
from rkio.runtime.rkllm.features import features_of
from rkio.runtime.rkllm.layouts import Generation


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def service(engine: FakeEngine, tmp_path: Path) -> RpcService:
    (tmp_path / "models").mkdir()
    return make_service(engine, tmp_path)


async def test_default_param_and_constants(service: RpcService) -> None:
    peer = push_peer(service)
    param = await peer.call("rkllm.createDefaultParam", [])
    assert param["max_context_len"] == 512 and param["top_k"] == 40
    assert set(param["extend_param"]) >= {
        "base_domain_id",
        "embed_flash",
        "enabled_cpus_num",
        "enabled_cpus_mask",
        "n_batch",
        "use_cross_attn",
    }
    consts = await peer.call("rkllm_get_constants", {})
    assert consts["LLM_CALL_STATES"] == {
        "RKLLM_RUN_NORMAL": 0,
        "RKLLM_RUN_WAITING": 1,
        "RKLLM_RUN_FINISH": 2,
        "RKLLM_RUN_ERROR": 3,
    }
    assert consts["INPUT_TYPES"]["RKLLM_INPUT_MULTIMODAL"] == 3
    assert consts["INFER_MODES"]["RKLLM_INFER_GET_LOGITS"] == 2
    assert consts["CPU_MASKS"]["CPU7"] == 128


async def test_constants_follow_the_lease_abi(engine: FakeEngine, service: RpcService) -> None:
    engine.features = frozenset(features_of(Generation.V1_1, None))
    engine.runtime_name = "rkllm-1.1.4"
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    consts = await peer.call("rkllm.get_constants")
    assert "RKLLM_INFER_GET_LOGITS" not in consts["INFER_MODES"] and consts["CPU_MASKS"] == {}
    assert consts["RUNTIME"] == "rkllm-1.1.4"


@pytest.mark.parametrize(
    "method,params",
    [
        (
            "rkllm.init",
            {"model_path": "qwen", "param": {"max_context_len": 2048, "extend_param": {"n_batch": 1}}},
        ),
        ("rkllm_init", {"param": {"model_path": "qwen", "max_context_len": 2048}}),
        (
            "rkllm_init",
            {
                "model_path": "qwen",
                "max_context_len": 2048,
                "is_async": False,
                "extend_param": {"enabled_cpus_num": 4, "enabled_cpus_mask": 240},
            },
        ),
        ("init", {"model_path": "qwen", "max_context_len": 2048, "temperature": 0.7}),
        (
            "rkllm.init",
            [None, {"model_path": "qwen", "max_context_len": 2048, "extend_param": {"reserved": None}}, None],
        ),
    ],
)
async def test_init_in_every_generation_form(engine: FakeEngine, service, method: str, params: Any) -> None:
    peer = push_peer(service)
    result = await peer.call(method, params)
    assert result["success"] is True and result["handle_id"] == 1 and result["model"] == "qwen"
    assert result["param"]["max_context_len"] == 2048
    ((_, overrides),) = engine.leases.values()
    assert overrides is not None and overrides.max_context_len == 2048


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.rkllm", "nope", "qwen/../../x.rkllm"])
async def test_init_refuses_paths_outside_the_models_dir(engine: FakeEngine, service, path: str) -> None:
    error = await push_peer(service).error("rkllm.init", {"model_path": path})
    assert error["code"] == -32602 and error["data"]["field"] == "model_path"
    assert engine.leases == {}


async def test_init_by_file_path_inside_the_models_dir(
    engine: FakeEngine, service: RpcService, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = service.settings.models_dir
    specs = [replace(s, path=str(models / s.name / f"{s.name}.rkllm")) for s in engine.models()]
    monkeypatch.setattr(engine, "models", lambda: specs)
    peer = push_peer(service)
    assert (await peer.call("rkllm.init", {"model_path": "qwen/qwen.rkllm"}))["model"] == "qwen"
    assert (await peer.call("rkllm.init", {"model_path": str(models / "llama" / "llama.rkllm")}))[
        "model"
    ] == "llama"


async def test_run_plain_with_nanos_latest_shape(engine: FakeEngine, service: RpcService) -> None:
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen", "param": {"max_new_tokens": 100}})
    result = await peer.call(
        "rkllm.run", {"input_type": "RKLLM_INPUT_PROMPT", "role": "user", "prompt": "what is two plus two"}
    )
    assert result["text"] == "what is two plus two" and result["finish_reason"] == "stop"
    assert result["token_ids"] == [100, 101, 102, 103, 104] and result["perf"]["prefill_tokens"] >= 0
    request = engine.requests[-1]
    assert request.runtime_input is not None and request.runtime_input.prompt == "what is two plus two"
    assert request.lease is not None and request.handle_state is not None
    assert request.handle_state.owner == request.lease


@pytest.mark.parametrize(
    "params",
    [
        {
            "rkllm_input": {"input_type": 0, "prompt": "a b"},
            "rkllm_infer_params": {"mode": 0, "keep_history": 1},
        },
        {
            "role": "user",
            "enable_thinking": False,
            "input_type": 0,
            "prompt_input": "a b",
            "mode": 0,
            "keep_history": 1,
        },
        [
            None,
            {"input_type": 0, "prompt_input": "a b"},
            {"mode": "RKLLM_INFER_GENERATE", "keep_history": 1},
            None,
        ],
        {"input": {"input_type": 0, "prompt_input": "a b"}, "infer_params": {"mode": 0, "keep_history": 1}},
    ],
)
async def test_run_forms(engine: FakeEngine, service, params: Any) -> None:
    peer = push_peer(service)
    await peer.call("rkllm_init", {"model_path": "qwen"})
    assert (await peer.call("rkllm_run", params))["text"] == "a b"
    runtime_input = engine.requests[-1].runtime_input
    assert runtime_input is not None and runtime_input.keep_history is True


async def test_run_rejects_bad_input_naming_the_field(service: RpcService) -> None:
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    assert (await peer.error("rkllm.run", {"prompt": "x", "input_type": "RKLLM_INPUT_VIDEO"}))["data"][
        "field"
    ] == "input_type"
    assert (await peer.error("rkllm.run", {"prompt": "x", "colour": 1}))["data"]["field"] == "colour"
    assert (await peer.error("rkllm.run", {"input_type": 1}))["data"]["field"] == "token_input"
    assert (await peer.error("rkllm.run", {"rkllm_input": {"prompt": 5}}))["data"][
        "field"
    ] == "rkllm_input.prompt"


async def test_push_stream_then_full_response(service: RpcService) -> None:
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    result = await peer.call("rkllm_run", {"prompt": "one two three", "stream": True})
    notes = [m for m in peer.pushed if m.get("method") == "rkllm_run"]
    assert [n["params"]["seq"] for n in notes] == [0, 1, 2, 3]
    assert "".join(n["params"]["delta"] for n in notes) == "one two three" == result["text"]
    assert notes[-1]["params"]["end"] is True and notes[-1]["params"]["finish_reason"] == "stop"
    assert all("id" not in n for n in notes) and result["stream_id"] == notes[0]["params"]["stream_id"]


async def test_callbacks_stream_ends_with_finish_as_the_answer(service: RpcService) -> None:
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    reply = await peer.request("rkllm.run", {"prompt": "one two", "stream": "callbacks"})
    assert reply is None  # answered by the callbacks themselves
    states = [m["result"]["_callback_state"] for m in peer.pushed]
    assert states == [0, 0, 2] and {m["id"] for m in peer.pushed} == {2}
    assert "".join(m["result"]["text"] for m in peer.pushed) == "one two"


async def test_stream_default_callbacks_stands_in_for_nano(engine: FakeEngine, tmp_path: Path) -> None:
    peer = push_peer(make_service(engine, tmp_path, rpc_stream_default="callbacks"))
    await peer.call("rkllm.init", {"model_path": "qwen"})
    assert await peer.request("rkllm.run", {"prompt": "hi"}) is None
    assert peer.pushed[-1]["result"]["_callback_state"] == 2
    assert (await peer.call("rkllm.run", {"prompt": "plain", "stream": False}))["text"] == "plain"
    pushed = len(peer.pushed)
    chat = await peer.call("rkio.chat", {"model": "qwen", "messages": [{"role": "user", "content": "hi"}]})
    assert chat["text"] == "hi" and len(peer.pushed) == pushed  # the default is rkllm.run's only


async def test_callbacks_error_state(engine: FakeEngine, service: RpcService) -> None:
    from rkio.errors import RuntimeFailure

    engine.script = lambda request: [RuntimeFailure("rkllm_run returned -1")]
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    assert await peer.request("rkllm.run", {"prompt": "x", "stream": "callbacks"}) is None
    last = peer.pushed[-1]["result"]
    assert last["_callback_state"] == 3 and last["error"]["code"] == -32000


async def test_http_pull_stream_and_expiry(engine: FakeEngine, tmp_path: Path) -> None:
    clock = FakeClock()
    service = make_service(engine, tmp_path, clock)
    peer = http_peer(service)
    handle = (await peer.call("rkllm.init", {"model_path": "qwen"}))["handle_id"]
    assert 0 < handle < 2**53
    started = await peer.call("rkllm.run", {"handle_id": handle, "prompt": "a b c", "stream": True})
    stream_id = started["stream_id"]
    await asyncio.gather(*service._tasks - {t for t in service._tasks if t.get_coro().__name__ == "_sweep"})
    chunks = (await peer.call("rkllm.run", {"stream_id": stream_id}))["chunks"]
    assert "".join(c["delta"] for c in chunks) == "a b c" and chunks[-1]["end"] is True
    error = await peer.error("rkllm.run", {"stream_id": stream_id})
    assert error["code"] == -32001 and error["message"] == "stream session not exists or expired"
    # an undrained stream expires and aborts its generation
    gate = asyncio.Event()
    engine.script = lambda request: [gate]
    stream_id = (await peer.call("rkllm.run", {"handle_id": handle, "prompt": "x", "stream": True}))[
        "stream_id"
    ]
    await run_ready_callbacks()  # one turn of the ready queue, no timing
    clock.now += service.settings.rpc_stream_ttl + 1
    await service.sweep_once()
    assert engine.cancelled and (await peer.error("rkllm.run", {"stream_id": stream_id}))["code"] == -32001


async def test_abort_from_a_second_request_and_is_running(engine: FakeEngine, service: RpcService) -> None:
    gate = asyncio.Event()
    engine.script = lambda request: [*__import__("fake_engine").token_chunks(["partial"]), gate]
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    assert (await peer.call("rkllm.is_running"))["is_running"] is False
    run = asyncio.ensure_future(peer.call("rkllm.run", {"prompt": "x"}))
    await asyncio.wait_for(engine.request_seen.wait(), 5)
    await run_ready_callbacks()  # one turn of the ready queue, no timing
    running = await peer.call("rkllm.is_running")
    assert running == {"is_running": True, "status_code": 0}
    assert (await peer.call("rkllm.abort"))["message"] == "Task aborted successfully"
    result = await asyncio.wait_for(run, 5)
    assert result["finish_reason"] == "abort" and result["text"] == "partial"
    assert engine.cancelled and (await peer.call("rkllm.is_running"))["is_running"] is False
    assert (await peer.call("rkllm.abort"))["message"] == "No task was running"


async def test_run_async_answers_at_once_then_streams(service: RpcService) -> None:
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    started = await peer.call("rkllm.run_async", {"prompt": "x y"})
    assert set(started) == {"handle_id", "stream_id"}
    await asyncio.gather(*peer.session._tasks)
    assert peer.pushed[-1]["params"]["end"] is True


async def test_kv_cache_calls(engine: FakeEngine, service: RpcService) -> None:
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    cleared = await peer.call("rkllm.clear_kv_cache", [None, 1, [0], [10]])
    assert cleared["success"] and cleared["keep_system_prompt"] == 1
    assert (await peer.call("rkllm.get_kv_cache_size"))["cache_sizes"] == [7]
    ops = [(call.op, call.args) for _, call in engine.runtime_calls]
    assert ops == [
        ("clear_kv_cache", {"keep_system_prompt": True, "ranges": [[0, 10]]}),
        ("get_kv_cache_size", {}),
    ]
    assert (await peer.error("rkllm.clear_kv_cache", {"start_pos": [1]}))["code"] == -32602


async def test_destroy_twice_and_foreign_handles(engine: FakeEngine, service: RpcService) -> None:
    a, b = push_peer(service), push_peer(service)
    assert (await a.call("rkllm.init", {"model_path": "qwen"}))["handle_id"] == 1
    assert (await b.call("rkllm.init", {"model_path": "qwen"}))["handle_id"] == 1  # per-connection ids
    await a.call("rkllm.init", {"model_path": "llama"})
    assert (await a.error("rkllm.run", {"prompt": "x"}))["data"][
        "field"
    ] == "handle_id"  # two open: say which
    assert (await a.call("rkllm.destroy", {"handle_id": 2}))["success"]
    error = await a.error("rkllm.destroy", {"handle_id": 2})
    assert error["code"] == -32002 and error["data"]["handle_id"] == 2
    assert (await a.error("rkllm.run", {"handle_id": 9, "prompt": "x"}))["code"] == -32002
    await a.session.close()
    assert len(engine.leases) == 1  # a's lease closed with its connection, b's is still open
    assert (await b.call("rkllm.run", {"prompt": "still mine"}))["text"] == "still mine"


async def test_http_handles_are_random_and_expire(engine: FakeEngine, tmp_path: Path) -> None:
    clock = FakeClock()
    service = make_service(engine, tmp_path, clock)
    peer = http_peer(service)
    first = (await peer.call("rkllm.init", {"model_path": "qwen"}))["handle_id"]
    second = (await peer.call("rkllm.init", {"model_path": "qwen"}))["handle_id"]
    assert first != second and first > 1000 and second > 1000
    assert (await peer.error("rkllm.run", {"prompt": "x"}))["data"]["field"] == "handle_id"
    clock.now += 300
    await peer.call("rkllm.is_running", {"handle_id": first})
    clock.now += service.settings.rpc_lease_ttl - 100
    await service.sweep_once()
    assert (await peer.call("rkllm.is_running", {"handle_id": first}))["is_running"] is False
    assert (await peer.error("rkllm.is_running", {"handle_id": second}))["code"] == -32002
    assert len(engine.leases) == 1


async def test_lora_load_and_select(engine: FakeEngine, service: RpcService) -> None:
    adapter = service.settings.models_dir / "adapters" / "style.rkllm"
    adapter.parent.mkdir(parents=True)
    adapter.write_bytes(b"lora")
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    error = await peer.error("rkllm.run", {"prompt": "x", "lora_params": {"lora_adapter_name": "style"}})
    assert error["data"]["field"] == "lora_params.lora_adapter_name"
    assert (
        await peer.error(
            "rkllm.load_lora",
            {"lora_adapter": {"lora_adapter_path": "/etc/passwd", "lora_adapter_name": "x"}},
        )
    )["code"] == -32602
    loaded = await peer.call(
        "rkllm.load_lora",
        {
            "lora_adapter": {
                "lora_adapter_path": "adapters/style.rkllm",
                "lora_adapter_name": "style",
                "scale": 0.5,
            }
        },
    )
    assert loaded["success"]
    assert engine.runtime_calls[-1][1].args == {
        "lora_adapter_path": "adapters/style.rkllm",
        "lora_adapter_name": "style",
        "scale": 0.5,
    }
    await peer.call("rkllm.run", {"prompt": "x", "lora_params": {"lora_adapter_name": "style"}})
    runtime_input = engine.requests[-1].runtime_input
    assert runtime_input is not None and runtime_input.lora == "style"


async def test_prompt_cache_save_then_load(engine: FakeEngine, service: RpcService) -> None:
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    await peer.call(
        "rkllm.run",
        {
            "rkllm_input": {"prompt": "x"},
            "rkllm_infer_params": {
                "prompt_cache_params": {"save_prompt_cache": 1, "prompt_cache_path": "chat.cache"}
            },
        },
    )
    runtime_input = engine.requests[-1].runtime_input
    assert runtime_input is not None and runtime_input.prompt_cache is not None
    saved = Path(runtime_input.prompt_cache.path)
    assert (
        saved.parent == service.settings.state_dir / "prompt-cache"
        and runtime_input.prompt_cache.save
    )
    error = await peer.error("rkllm.load_prompt_cache", {"prompt_cache_path": "chat.cache"})
    assert "does not exist" in error["message"]
    saved.write_bytes(b"cache")  # noqa: ASYNC240 - what the runtime writes after the run
    assert (await peer.call("rkllm.load_prompt_cache", [None, "chat.cache"]))["success"]
    await peer.call("rkllm.run", {"prompt": "y"})
    state = engine.requests[-1].handle_state
    assert state is not None and state.prompt_cache_path == str(saved)
    await peer.call("rkllm.release_prompt_cache")
    await peer.call("rkllm.run", {"prompt": "z"})
    state = engine.requests[-1].handle_state
    assert state is not None and state.prompt_cache_path is None
    assert (await peer.error("rkllm.load_prompt_cache", {"prompt_cache_path": "../../x"}))["code"] == -32602


async def test_per_lease_state_never_leaks(engine: FakeEngine, service: RpcService) -> None:
    a, b = push_peer(service), push_peer(service)
    await a.call("rkllm.init", {"model_path": "qwen"})
    await b.call("rkllm.init", {"model_path": "qwen"})
    await a.call(
        "rkllm.set_chat_template",
        {"template_config": {"system_prompt": "<sys>", "prompt_prefix": "<u>", "prompt_postfix": "<a>"}},
    )
    await a.call(
        "rkllm_set_function_tools",
        {"system_prompt": "s", "tools": [{"name": "f"}], "tool_response_str": "tool"},
    )
    await a.call(
        "rkllm.set_cross_attn_params",
        {
            "cross_attn_params": {
                "num_tokens": 2,
                "encoder_k_cache": [[1.0, 2.0]],
                "encoder_v_cache": [3.0],
                "encoder_mask": [1.0],
                "encoder_pos": [0, 1],
            }
        },
    )
    await a.call("rkllm.run", {"prompt": "x"})
    await b.call("rkllm.run", {"prompt": "y"})
    state_a, state_b = engine.requests[0].handle_state, engine.requests[1].handle_state
    assert state_a is not None and state_b is not None
    assert state_a.chat_template is not None and state_a.chat_template.prompt_prefix == "<u>"
    assert state_a.function_tools is not None and state_a.function_tools.tools_json == '[{"name": "f"}]'
    assert state_a.cross_attn is not None and state_a.cross_attn.num_tokens == 2
    assert state_a.cross_attn.encoder_k_cache == b"\x00\x00\x80?\x00\x00\x00@"
    assert (state_b.chat_template, state_b.function_tools, state_b.cross_attn) == (None, None, None)
    assert state_a.owner != state_b.owner


async def test_functions_a_runtime_lacks(engine: FakeEngine, service: RpcService) -> None:
    engine.features = frozenset(features_of(Generation.V1_1, None))
    engine.runtime_name = "rkllm-1.1.4"
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    for method, params in (
        ("rkllm.set_function_tools", {"tools": "[]"}),
        ("rkllm.get_kv_cache_size", {}),
        ("rkllm.clear_kv_cache", {}),
        ("rkllm.set_chat_template", {"system_prompt": ""}),
        ("rkllm.run", {"prompt": "x", "mode": 2}),
        ("rkllm.run", {"prompt": "x", "keep_history": 1}),
    ):
        error = await peer.error(method, params)
        assert error["code"] == -32006, (method, error)
        assert error["message"].endswith("is not supported by runtime rkllm-1.1.4")
        assert error["data"]["runtime"] == "rkllm-1.1.4"


async def test_outputs_of_hidden_and_logits_runs(engine: FakeEngine, service: RpcService) -> None:
    import struct

    from fake_engine import done

    from rkio.runtime.base import RunOutputs

    small = RunOutputs("hidden", struct.pack("<4f", 1, 2, 3, 4), (2, 2))
    large = RunOutputs("logits", b"\x00" * 4 * 10_000, (1, 10_000))
    outputs = iter([small, large])

    def script(request):
        finished = done(1, 0)
        return [
            type(finished)(
                finished.finish_reason, finished.usage, finished.timings, finished.perf, next(outputs)
            )
        ]

    engine.script = script
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    hidden = await peer.call("rkllm.run", {"prompt": "x", "mode": "RKLLM_INFER_GET_LAST_HIDDEN_LAYER"})
    assert hidden["last_hidden_layer"] == {"embd_size": 2, "num_tokens": 2, "hidden_states": [1, 2, 3, 4]}
    runtime_input = engine.requests[-1].runtime_input
    assert runtime_input is not None and runtime_input.mode == "hidden"
    logits = await peer.call("rkllm.run", {"prompt": "x", "mode": 2})
    assert logits["logits"]["vocab_size"] == 10_000 and "logits_base64" in logits["logits"]


async def test_a_crashed_runner_leaves_a_dead_handle(engine: FakeEngine, service: RpcService) -> None:
    from rkio.errors import RunnerCrashed

    engine.script = lambda request: [RunnerCrashed("runner for qwen crashed with SIGSEGV during generation")]
    peer = push_peer(service)
    await peer.call("rkllm.init", {"model_path": "qwen"})
    error = await peer.error("rkllm.run", {"prompt": "x"})
    assert error["code"] == -32005 and "SIGSEGV" in error["message"]
    for method in ("rkllm.run", "rkllm.get_kv_cache_size", "rkllm.set_chat_template"):
        error = await peer.error(method, {"prompt": "x"} if method == "rkllm.run" else {})
        assert error["code"] == -32005 and "is dead" in error["message"], method
    assert (await peer.call("rkllm.destroy"))["success"]  # a dead handle can still be destroyed
    assert engine.leases == {}
