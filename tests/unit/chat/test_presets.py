"""The built-in chat templates render the exact prompt formats the model families were trained on."""

from __future__ import annotations

import json

import pytest

from rkio.engine.types import ChatMessage
from rkio.runtime.chat import ChatTemplate

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def conversation_with_tool_use() -> list[ChatMessage]:
    return [
        ChatMessage("user", "Weather in Paris?"),
        ChatMessage("assistant", "", tool_calls=(CALL,)),
        ChatMessage("tool", '{"temp_c": 21}', tool_call_id="call_1"),
        ChatMessage("tool", "sunny", tool_call_id="call_1"),
    ]


def test_chatml_is_the_default_and_renders_turns() -> None:
    template = ChatTemplate.default()
    prompt = template.render([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")])
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert template.name == "chatml"
    assert "<|im_end|>" in template.stop_strings


def test_generation_prompt_can_be_left_out() -> None:
    template = ChatTemplate.from_source("chatml")
    prompt = template.render([ChatMessage("user", "Hi")], add_generation_prompt=False)
    assert prompt == "<|im_start|>user\nHi<|im_end|>\n"


def test_chatml_tools_are_hermes_style_with_json_schemas() -> None:
    template = ChatTemplate.from_source("chatml")
    prompt = template.render([ChatMessage("user", "Weather?")], tools=[WEATHER_TOOL])
    system = prompt.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\n# Tools")
    block = system.split("<tools>\n")[1].split("\n</tools>")[0]
    assert json.loads(block) == WEATHER_TOOL
    assert "<tool_call></tool_call>" in system


def test_chatml_tool_calls_and_grouped_tool_responses() -> None:
    prompt = ChatTemplate.from_source("chatml").render(conversation_with_tool_use())
    assert (
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
        "</tool_call><|im_end|>\n"
    ) in prompt
    # Consecutive tool results share one user turn, as Qwen's template does.
    assert (
        "<|im_start|>user\n<tool_response>\n{\"temp_c\": 21}\n</tool_response>\n"
        "<tool_response>\nsunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    ) in prompt
    assert prompt.count("<|im_start|>user") == 2


def test_tool_call_arguments_given_as_a_mapping_are_serialised_once() -> None:
    call = {"function": {"name": "f", "arguments": {"x": "<&>"}}}
    prompt = ChatTemplate.default().render([ChatMessage("assistant", "ok", tool_calls=(call,))],
                                           add_generation_prompt=False)
    assert '{"name": "f", "arguments": {"x": "<&>"}}' in prompt


def test_qwen3_hides_reasoning_unless_thinking_is_enabled() -> None:
    template = ChatTemplate.from_source("qwen3")
    history = [ChatMessage("user", "2+2?"), ChatMessage("assistant", "<think>add</think>\n4"),
               ChatMessage("user", "3+3?")]
    off = template.render(history)
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert "<think>add</think>" not in off and "<|im_start|>assistant\n4<|im_end|>" in off
    on = template.render(history, enable_thinking=True)
    assert on.endswith("<|im_start|>assistant\n")


def test_llama3() -> None:
    template = ChatTemplate.from_source("llama3", bos_token="<|begin_of_text|>")
    prompt = template.render([ChatMessage("system", "Be brief."), ChatMessage("user", " Hi ")])
    assert prompt == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert template.stop_strings[0] == "<|eot_id|>"
    tools = template.render(conversation_with_tool_use(), tools=[WEATHER_TOOL])
    assert "<|start_header_id|>ipython<|end_header_id|>\n\nsunny<|eot_id|>" in tools
    assert '<|start_header_id|>assistant<|end_header_id|>\n\n<tool_call>\n{"name": "get_weather"' in tools


def test_gemma_folds_the_system_prompt_into_the_first_user_turn() -> None:
    template = ChatTemplate.from_source("gemma", bos_token="<bos>")
    prompt = template.render([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"),
                              ChatMessage("assistant", "Hello!"), ChatMessage("user", "Bye")])
    assert prompt == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert template.stop_strings == ("<end_of_turn>",)


def test_gemma_tools_and_tool_results() -> None:
    prompt = ChatTemplate.from_source("gemma").render(conversation_with_tool_use(), tools=[WEATHER_TOOL])
    assert prompt.startswith("<start_of_turn>user\n# Tools\n")
    assert "<start_of_turn>model\n<tool_call>\n" in prompt
    assert prompt.endswith("sunny\n</tool_response><end_of_turn>\n<start_of_turn>model\n")


def test_phi3() -> None:
    prompt = ChatTemplate.from_source("phi3").render([ChatMessage("system", "S"), ChatMessage("user", "Hi")])
    assert prompt == "<|system|>\nS<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n"
    assert "<|end|>" in ChatTemplate.from_source("phi3").stop_strings


def test_deepseek_with_and_without_thinking() -> None:
    template = ChatTemplate.from_source("deepseek", bos_token="<｜begin▁of▁sentence｜>")
    history = [ChatMessage("user", "Hi"), ChatMessage("assistant", "<think>greet</think>\n\nHello"),
               ChatMessage("user", "Bye")]
    prompt = template.render(history)
    assert prompt == (
        "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>Hello<｜end▁of▁sentence｜>"
        "<｜User｜>Bye<｜Assistant｜>"
    )
    assert template.render(history, enable_thinking=True).endswith("<｜Assistant｜><think>\n")
    assert template.stop_strings == ("<｜end▁of▁sentence｜>",)


@pytest.mark.parametrize("preset", ChatTemplate.presets())
def test_every_preset_renders_every_role_and_user_text_verbatim(preset: str) -> None:
    text = "Ünïcødé <b>&amp; {{ not jinja }} 🚀"
    prompt = ChatTemplate.from_source(preset).render(
        [ChatMessage("system", "sys"), *conversation_with_tool_use(), ChatMessage("user", text)],
        tools=[WEATHER_TOOL])
    assert text in prompt
    assert "get_weather" in prompt and "sunny" in prompt


def test_preset_names_are_case_insensitive_and_eos_joins_stop_strings() -> None:
    template = ChatTemplate.from_source(" Gemma ", eos_token="<eos>")
    assert template.name == "gemma"
    assert template.stop_strings == ("<end_of_turn>", "<eos>")
