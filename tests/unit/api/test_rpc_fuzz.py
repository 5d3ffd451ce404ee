"""Hypothesis against the dispatcher: whatever arrives, each request gets exactly one well-formed answer,
never an internal error (-32603 means a bug), and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from fake_engine import FakeEngine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rpc_helpers import http_peer, make_service, push_peer

from rkio.api.jsonrpc.params import RKIO_METHODS, RKLLM_FUNCTIONS
from rkio.api.jsonrpc.protocol import CODES

KNOWN_CODES = set(CODES.values()) - {-32603}
FIELDS = [
    "model",
    "model_path",
    "param",
    "prompt",
    "prompt_input",
    "input_type",
    "mode",
    "keep_history",
    "rkllm_input",
    "rkllm_infer_params",
    "handle_id",
    "stream",
    "stream_id",
    "messages",
    "lora_adapter",
    "lora_params",
    "prompt_cache_params",
    "prompt_cache_path",
    "template_config",
    "tools",
    "cross_attn_params",
    "keep_system_prompt",
    "start_pos",
    "end_pos",
    "token_input",
    "embed_input",
    "multimodal",
    "max_tokens",
    "temperature",
    "api_key",
    "extend_param",
    "num_tokens",
    "role",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["qwen", "RKLLM_INPUT_PROMPT", "callbacks", "../../etc/passwd"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=16,
)
methods = st.sampled_from(
    [f"rkllm.{f}" for f in RKLLM_FUNCTIONS]
    + [f"rkllm_{f}" for f in RKLLM_FUNCTIONS]
    + list(RKLLM_FUNCTIONS)
    + list(RKIO_METHODS)
) | st.text(max_size=12)
requests = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "method": methods},
    optional={
        "id": st.integers(0, 1000) | st.text(max_size=5) | st.none(),
        "params": st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
        | st.lists(json_values, max_size=4),
    },
)
frames = requests | st.lists(requests, max_size=3) | json_values


def check_reply(message: Any, reply: Any) -> None:
    expected = message if isinstance(message, list) else [message]
    if reply is None:
        assert (
            all(
                isinstance(m, dict) and "id" not in m and isinstance(m.get("method"), str) and m["method"]
                for m in expected
            )
            and expected
        ), (message, reply)
        return
    well_formed(reply)


def well_formed(reply: Any) -> None:
    for r in reply if isinstance(reply, list) else [reply]:
        assert r["jsonrpc"] == "2.0" and ("result" in r) != ("error" in r), r
        if "error" in r:
            assert r["error"]["code"] in KNOWN_CODES, r
            assert isinstance(r["error"]["message"], str)


async def exercise(frames_: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "models").mkdir()
        service = make_service(FakeEngine(), Path(tmp))
        peers = [push_peer(service), http_peer(service)]
        await peers[0].call("rkllm.init", {"model_path": "qwen"})
        for i, frame in enumerate(frames_):
            peer = peers[i % 2]
            raw = json.dumps(frame)
            check_reply(frame, await peer.raw(raw))
        assert "INPUT_TYPES" in await peers[0].call("rkllm.get_constants")
        await service.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(frames, min_size=1, max_size=4))
def test_dispatcher_fuzz(frames_: list[Any]) -> None:
    asyncio.run(exercise(frames_))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            service = make_service(FakeEngine(), Path(tmp))
            reply = await push_peer(service).raw(data)
            if reply is not None:
                well_formed(reply)

    asyncio.run(run())
