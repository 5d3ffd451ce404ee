"""What the runner's handle holds for its clients, and the steps that put it into a lease's wanted state.

A handle is shared by every client of its model instance (HTTP requests and JSON-RPC leases). Before each
run the runner compares the state the run wants (``HandleState``) with what the handle holds and applies
only the differences: chat template, function tools, cross-attention parameters, prompt cache, and the KV
cache, which is cleared whenever its content belongs to another owner. So no client's template, tools or
context ever reaches another client's run.

``plan`` is pure (unit-tested); ``apply`` performs the steps on a runtime and records each one that
succeeded, so a failing step leaves an exact record of what the handle holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rkio.engine.runner.kv_reuse import KvContent
from rkio.engine.types import HandleState
from rkio.runtime.base import ChatTemplateOverride, CrossAttnParams, Feature, FunctionTools, Runtime

RKIO_TEMPLATE = ChatTemplateOverride("", "", "")
"""Set at load: rkio renders prompts itself, so the runtime must not wrap them again."""

NO_TOOLS = FunctionTools("", "[]", "")  # an empty tools list: rkllm has no call that unsets tools
NO_CROSS_ATTN = CrossAttnParams(b"", b"", b"", (), 0)  # zero encoder tokens: nothing to attend to

HTTP_STATE = HandleState(owner="")


@dataclass(slots=True)
class HandleHolds:
    """The runtime state a handle is in (as far as rkio put it there)."""

    chat_template: ChatTemplateOverride | None
    function_tools: FunctionTools | None = None
    cross_attn: CrossAttnParams | None = None
    prompt_cache_path: str | None = None
    kv_owner: str | None = None  # whose context the KV cache may hold; None = empty
    kv_content: KvContent | None = None  # exactly what it holds, when an HTTP chat left it known

    @classmethod
    def after_load(cls, features: frozenset[Feature]) -> HandleHolds:
        return cls(chat_template=RKIO_TEMPLATE if Feature.CHAT_TEMPLATE in features else None)


StepKind = Literal["clear_kv", "chat_template", "function_tools", "cross_attn", "release_prompt_cache",
                   "load_prompt_cache"]


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    value: ChatTemplateOverride | FunctionTools | CrossAttnParams | str | None = None


def plan(holds: HandleHolds, wanted: HandleState, features: frozenset[Feature]) -> list[Step]:
    """The steps (in order) that turn ``holds`` into ``wanted``; empty when nothing differs."""
    steps: list[Step] = []
    # Before 1.2.0 there is no keep_history: every run starts from an empty cache, nothing can leak.
    if Feature.CLEAR_KV_CACHE in features and holds.kv_owner is not None and (
            wanted.clear_kv or holds.kv_owner != wanted.owner):
        steps.append(Step("clear_kv"))
    template = wanted.chat_template
    if template is None and Feature.CHAT_TEMPLATE in features:
        template = RKIO_TEMPLATE
    if template != holds.chat_template:
        steps.append(Step("chat_template", template))
    if wanted.function_tools != holds.function_tools:
        steps.append(Step("function_tools", wanted.function_tools or NO_TOOLS))
    if wanted.cross_attn != holds.cross_attn:
        steps.append(Step("cross_attn", wanted.cross_attn or NO_CROSS_ATTN))
    if wanted.prompt_cache_path != holds.prompt_cache_path:
        if holds.prompt_cache_path is not None:
            steps.append(Step("release_prompt_cache"))
        if wanted.prompt_cache_path is not None:
            steps.append(Step("load_prompt_cache", wanted.prompt_cache_path))
    return steps


def apply(runtime: Runtime, holds: HandleHolds, wanted: HandleState) -> None:
    """Put ``runtime``'s handle into ``wanted``; raises what the runtime raised (Unsupported, ...).

    Afterwards the KV cache belongs to ``wanted.owner``: the run about to start writes into it.
    """
    for step in plan(holds, wanted, runtime.features):
        value = step.value
        if step.kind == "clear_kv":
            runtime.clear_kv_cache(False)
            holds.kv_owner = holds.kv_content = None
        elif step.kind == "chat_template":
            assert isinstance(value, ChatTemplateOverride)
            runtime.set_chat_template(value)
            holds.chat_template = value
        elif step.kind == "function_tools":
            assert isinstance(value, FunctionTools)
            runtime.set_function_tools(value.system_prompt, value.tools_json, value.tool_response_str)
            holds.function_tools = None if value == NO_TOOLS else value
        elif step.kind == "cross_attn":
            assert isinstance(value, CrossAttnParams)
            runtime.set_cross_attn_params(value)
            holds.cross_attn = None if value == NO_CROSS_ATTN else value
        elif step.kind == "release_prompt_cache":
            runtime.release_prompt_cache()
            holds.prompt_cache_path = None
        else:
            assert isinstance(value, str)
            runtime.load_prompt_cache(value)
            holds.prompt_cache_path = value
    if holds.kv_owner != wanted.owner:
        holds.kv_content = None
    holds.kv_owner = wanted.owner
