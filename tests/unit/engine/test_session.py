"""How a GenerationRequest becomes the RunnerGeneration a runner receives."""

from __future__ import annotations

import pytest
from engine_fakes import spec

from rkio.engine.session import runner_generation
from rkio.engine.types import ChatMessage, GenerationRequest
from rkio.errors import InvalidRequest
from rkio.runtime.base import Sampling

MODEL = spec("a", system_prompt="You are terse.")


def test_chat_messages_pass_through_with_system_prompt_tools_stop_and_limits() -> None:
    msgs = (ChatMessage("user", "hi"),)
    tools = ({"type": "function", "function": {"name": "f"}},)
    gen = runner_generation(MODEL, GenerationRequest(
        model="a", messages=msgs, tools=tools, stop=("END",), max_tokens=7, sampling=Sampling(top_k=1),
        enable_thinking=True))
    assert gen.messages == msgs and gen.tools == tools and gen.stop == ("END",)
    assert gen.system_prompt == "You are terse."
    assert gen.params.max_new_tokens == 7 and gen.params.sampling == Sampling(top_k=1)
    assert gen.params.enable_thinking and gen.params.prompt is None


def test_completion_prompt_is_templated_unless_raw() -> None:
    templated = runner_generation(MODEL, GenerationRequest(model="a", prompt="Why?"))
    assert templated.messages == (ChatMessage("user", "Why?"),)
    raw = runner_generation(MODEL, GenerationRequest(model="a", prompt="<|im_start|>x", raw=True))
    assert raw.messages is None and raw.params.prompt == "<|im_start|>x" and raw.system_prompt is None


@pytest.mark.parametrize("request_", [
    GenerationRequest(model="a"), GenerationRequest(model="a", messages=()),
])
def test_empty_requests_are_invalid(request_: GenerationRequest) -> None:
    with pytest.raises(InvalidRequest):
        runner_generation(MODEL, request_)
