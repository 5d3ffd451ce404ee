"""Long random conversations (Hypothesis) on two runners of one sim model with ``context_reply=1``: one
reuses the KV cache, one always prefills the whole history. Every reply must be identical, across new
turns, edits of earlier messages, regenerations, stop strings, truncation, LoRA variants and two
conversations alternating on the same handle."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, target
from hypothesis import strategies as st
from test_kv_reuse import chat

import simkit
from rkio.engine.registry import ModelRegistry
from rkio.engine.runner import RunnerProcess
from rkio.engine.runner.messages import RunnerDone
from rkio.engine.types import ChatMessage

pytestmark = pytest.mark.timeout(300)

WORDS = ("alpha", "beta", "gamma", "delta", "echo", "[[n=5]]", "[[n=9]]", "[[think]]")
TEXT = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)


@dataclass
class Runners:
    loop: asyncio.AbstractEventLoop
    reuse: RunnerProcess
    fresh: RunnerProcess

    def turn(self, messages: list[ChatMessage], **kw: object) -> tuple[str, int, int]:
        async def both() -> list[tuple[str, RunnerDone]]:
            return list(await asyncio.gather(chat(self.reuse, messages, **kw),  # type: ignore[arg-type]
                                             chat(self.fresh, messages, **kw)))  # type: ignore[arg-type]

        (text, done), (expected, full) = self.loop.run_until_complete(both())
        assert text == expected, (messages, kw)
        return text, done.prompt_tokens, full.prompt_tokens


@pytest.fixture(scope="module")
def runners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runners]:
    root = tmp_path_factory.mktemp("kv-random")
    models = root / "models"
    simkit.make_model(models / "sim" / "sim.rkllm", 64 << 20, context_reply=1, max_context_limit=4096)
    adapter = models / "sim" / "ada.lora"
    adapter.write_bytes(b"lora")
    spec = replace(ModelRegistry(models).get("sim"), lora_adapters=(("ada", str(adapter), 1.0),))
    env = {"RKIO_RKLLM_LIB": str(simkit.sim_library("1.2.3")), "RKIO_RKLLM_ABI": "1.2.3",
           "RKLLM_SIM_STATE": str(Path(root) / "sim-state")}
    loop = asyncio.new_event_loop()
    reuse = loop.run_until_complete(RunnerProcess.start(spec, spec.load, env=env, load_timeout=30.0))
    fresh = loop.run_until_complete(RunnerProcess.start(replace(spec, kv_reuse=False), spec.load, env=env,
                                                        load_timeout=30.0))
    yield Runners(loop, reuse, fresh)
    for runner in (reuse, fresh):
        runner.kill()
        loop.run_until_complete(runner.wait())
    loop.close()


ACTION = st.one_of(
    st.tuples(st.just("say"), TEXT),
    st.tuples(st.just("edit"), st.integers(0, 20), TEXT),
    st.tuples(st.just("regenerate")),
    st.tuples(st.just("stop"), st.sampled_from(WORDS[:5])),
    st.tuples(st.just("truncate"), st.integers(1, 4)),
    st.tuples(st.just("switch")),
    st.tuples(st.just("lora"), st.sampled_from([None, "ada"])),
)


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(actions=st.lists(ACTION, min_size=5, max_size=30))
def test_reuse_replies_as_a_fresh_prefill(runners: Runners, actions: list[tuple[object, ...]]) -> None:
    conversations: list[list[ChatMessage]] = [[ChatMessage("system", "be brief")], []]
    current, lora = 0, None
    reused = 0
    for action in actions:
        messages = conversations[current]
        kw: dict[str, object] = {"lora": lora}
        kind = action[0]
        if kind == "switch":
            current = 1 - current
            continue
        if kind == "lora":
            lora = action[1]  # type: ignore[assignment]
            continue
        if kind == "edit":
            users = [i for i, m in enumerate(messages) if m.role == "user"]
            if not users:
                continue
            i = users[int(action[1]) % len(users)]  # type: ignore[call-overload]
            messages[i] = ChatMessage("user", f"{messages[i].content} {action[2]}")
            del messages[i + 1:]
        elif kind == "regenerate":
            if not messages or messages[-1].role != "assistant":
                continue
            messages.pop()
        elif kind == "stop":
            kw["stop"] = (action[1],)
        elif kind == "truncate":
            kw["max_tokens"] = action[1]
        if kind in ("say", "stop", "truncate") or not messages or messages[-1].role != "user":
            messages.append(ChatMessage("user", str(action[1]) if kind == "say" else "go on"))
        text, mine, full = runners.turn(messages, **kw)
        reused += mine < full
        messages.append(ChatMessage("assistant", text))
    target(float(reused))  # steer Hypothesis towards conversations that do reuse the cache
