"""The runner's handle-state diff: what a lease's run changes on the shared handle, and nothing more."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rkio.engine.runner import calls
from rkio.engine.runner.handle_state import (
    NO_TOOLS,
    RKIO_TEMPLATE,
    HandleHolds,
    Step,
    apply,
    plan,
)
from rkio.engine.types import HandleState
from rkio.errors import InvalidRequest, RuntimeFailure, Unsupported
from rkio.runtime.base import ChatTemplateOverride, Feature, FunctionTools, LoraAdapter, require

ALL = frozenset(Feature)
V11 = frozenset({Feature.LORA, Feature.PROMPT_CACHE})  # no chat template, no clear_kv_cache
PIRATE = ChatTemplateOverride("You are a pirate.", "<u>", "</u>")
TOOLS = FunctionTools("tools:", '[{"name": "weather"}]', "<tool_response>")


def kinds(steps: Sequence[Step]) -> list[str]:
    return [s.kind for s in steps]


def test_http_runs_on_a_fresh_handle_change_nothing() -> None:
    holds = HandleHolds.after_load(ALL)
    assert plan(holds, HandleState(owner=""), ALL) == []


def test_a_lease_state_is_applied_once_then_only_its_differences() -> None:
    holds = HandleHolds.after_load(ALL)
    wanted = HandleState(owner="L1", chat_template=PIRATE, function_tools=TOOLS)
    assert kinds(plan(holds, wanted, ALL)) == ["chat_template", "function_tools"]
    holds.chat_template, holds.function_tools, holds.kv_owner = PIRATE, TOOLS, "L1"
    assert plan(holds, wanted, ALL) == []
    assert kinds(plan(holds, HandleState(owner="L1", chat_template=PIRATE), ALL)) == ["function_tools"]


def test_another_owner_gets_a_cleared_kv_and_rkios_template_back() -> None:
    holds = HandleHolds(chat_template=PIRATE, function_tools=TOOLS, kv_owner="L1")
    steps = plan(holds, HandleState(owner=""), ALL)
    assert steps == [Step("clear_kv"), Step("chat_template", RKIO_TEMPLATE), Step("function_tools", NO_TOOLS)]


def test_clear_kv_is_asked_for_explicitly_or_skipped_when_the_kv_is_empty() -> None:
    assert plan(HandleHolds(RKIO_TEMPLATE, kv_owner="L1"), HandleState("L1", clear_kv=True), ALL) == [
        Step("clear_kv")]
    assert plan(HandleHolds(RKIO_TEMPLATE, kv_owner=None), HandleState("L2", clear_kv=True), ALL) == []


def test_prompt_caches_are_swapped_release_first() -> None:
    holds = HandleHolds(RKIO_TEMPLATE, prompt_cache_path="/m/a.cache", kv_owner="L1")
    assert plan(holds, HandleState("L1", prompt_cache_path="/m/b.cache"), ALL) == [
        Step("release_prompt_cache"), Step("load_prompt_cache", "/m/b.cache")]


def test_before_1_2_0_nothing_is_cleared_and_a_template_wish_reaches_the_runtime() -> None:
    holds = HandleHolds.after_load(V11)
    holds.kv_owner = "L1"
    assert plan(holds, HandleState(owner=""), V11) == []  # every 1.1 run starts from an empty cache
    assert kinds(plan(holds, HandleState("L2", chat_template=PIRATE), V11)) == ["chat_template"]


class Recorder:
    """A runtime that records the state calls and can refuse some."""

    name = "rec-1"

    def __init__(self, features: frozenset[Feature] = ALL, refuse: str = "") -> None:
        self.features = features
        self.refuse = refuse
        self.log: list[str] = []
        self.sizes = [7]

    def _do(self, what: str) -> None:
        if what == self.refuse:
            raise RuntimeFailure(f"{what} failed")
        self.log.append(what)

    def set_chat_template(self, template: ChatTemplateOverride) -> None:
        require(self, Feature.CHAT_TEMPLATE)  # type: ignore[arg-type]
        self._do(f"template {template.system_prompt}")

    def set_function_tools(self, system_prompt: str, tools_json: str, tool_response_str: str) -> None:
        self._do(f"tools {tools_json}")

    def clear_kv_cache(self, keep_system_prompt: bool, ranges: object = None) -> None:
        self._do(f"clear {keep_system_prompt} {ranges}")

    def kv_cache_size(self) -> list[int]:
        return self.sizes

    def load_lora(self, adapter: LoraAdapter) -> None:
        self._do(f"lora {adapter.name} {adapter.scale}")


def test_apply_records_what_succeeded_and_stops_at_a_failure() -> None:
    runtime = Recorder(refuse='tools [{"name": "weather"}]')
    holds = HandleHolds(RKIO_TEMPLATE, kv_owner="")
    with pytest.raises(RuntimeFailure):
        apply(runtime, holds, HandleState("L1", chat_template=PIRATE, function_tools=TOOLS))  # type: ignore[arg-type]
    assert runtime.log == ["clear False None", "template You are a pirate."]
    assert (holds.kv_owner, holds.chat_template, holds.function_tools) == (None, PIRATE, None)


def test_a_template_on_a_runtime_without_it_is_unsupported() -> None:
    runtime = Recorder(V11)
    with pytest.raises(Unsupported, match="set_chat_template"):
        apply(runtime, HandleHolds.after_load(V11), HandleState("L1", chat_template=PIRATE))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- runtime calls


def test_kv_calls_see_and_clear_only_the_callers_own_context() -> None:
    runtime = Recorder()
    holds = HandleHolds(RKIO_TEMPLATE, kv_owner="L1")
    assert calls.perform(runtime, holds, "get_kv_cache_size", {}, "L1") == [7]  # type: ignore[arg-type]
    assert calls.perform(runtime, holds, "get_kv_cache_size", {}, "L2") == [0]  # type: ignore[arg-type]
    calls.perform(runtime, holds, "clear_kv_cache", {"keep_system_prompt": False}, "L2")  # type: ignore[arg-type]
    assert runtime.log == [] and holds.kv_owner == "L1"
    calls.perform(runtime, holds, "clear_kv_cache", {"keep_system_prompt": True,  # type: ignore[arg-type]
                                                    "ranges": [[0, 4]]}, "L1")
    assert runtime.log == ["clear True [(0, 4)]"] and holds.kv_owner == "L1"  # partial: still L1's
    calls.perform(runtime, holds, "clear_kv_cache", {}, "L1")  # type: ignore[arg-type]
    assert holds.kv_owner is None


@pytest.mark.parametrize(("op", "args"), [
    ("load_lora", {"lora_adapter_name": "x"}),
    ("load_lora", {"lora_adapter_path": "/m/a", "lora_adapter_name": "x", "scale": "big"}),
    ("clear_kv_cache", {"ranges": [[0]]}),
    ("clear_kv_cache", {"ranges": [[-1, 3]]}),
    ("rkllm_destroy", {}),
])
def test_bad_call_arguments_are_invalid_requests(op: str, args: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest):
        calls.perform(Recorder(), HandleHolds(RKIO_TEMPLATE), op, args, "L1")  # type: ignore[arg-type]


def test_calls_a_runtime_lacks_are_unsupported() -> None:
    runtime = Recorder(V11)
    with pytest.raises(Unsupported, match="get_kv_cache_size"):
        calls.perform(runtime, HandleHolds(None), "get_kv_cache_size", {}, "L1")  # type: ignore[arg-type]
    with pytest.raises(Unsupported, match="clear_kv_cache"):
        calls.perform(runtime, HandleHolds(None, kv_owner="L1"), "clear_kv_cache", {}, "L1")  # type: ignore[arg-type]
    calls.perform(runtime, HandleHolds(None), "load_lora",  # type: ignore[arg-type]
                  {"lora_adapter_path": "/m/a.rkllm", "lora_adapter_name": "ad", "scale": 0.5}, "L1")
    assert runtime.log == ["lora ad 0.5"]
