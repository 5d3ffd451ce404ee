"""Templates from model files (HF / GGUF Jinja) render as transformers would, inside a sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from rkio.engine.types import ChatMessage
from rkio.errors import InvalidRequest
from rkio.runtime.chat import ChatTemplate, TemplateError, guess_preset

DATA = Path(__file__).parent / "data"


def gemma3_template() -> ChatTemplate:
    source = (DATA / "gemma3.jinja").read_text(encoding="utf-8")
    return ChatTemplate.from_source(source, bos_token="<bos>", eos_token="<eos>")


def test_gemma3_model_template_renders_like_transformers() -> None:
    prompt = gemma3_template().render(
        [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello!"),
         ChatMessage("user", "Bye")])
    assert prompt == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_model_template_and_gemma_preset_agree() -> None:
    messages = [ChatMessage("system", "S"), ChatMessage("user", "question")]
    preset = ChatTemplate.from_source("gemma", bos_token="<bos>")
    assert gemma3_template().render(messages) == preset.render(messages)


def test_stop_strings_come_from_the_template_markers_and_eos() -> None:
    assert gemma3_template().stop_strings == ("<end_of_turn>", "<eos>")
    assert gemma3_template().name == "custom"


def test_raise_exception_becomes_a_client_error() -> None:
    with pytest.raises(InvalidRequest, match="roles must alternate"):
        gemma3_template().render([ChatMessage("user", "a"), ChatMessage("user", "b")])


def test_loop_controls_tojson_and_namespace_work() -> None:
    source = (
        "{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'system' %}{% continue %}"
        "{% endif %}{% set ns.n = ns.n + 1 %}{{ m | tojson }}{% if ns.n > 1 %}{% break %}{% endif %}"
        "{% endfor %}|{{ ns.n }}|{{ tools | tojson }}"
    )
    out = ChatTemplate.from_source(source).render(
        [ChatMessage("system", "s"), ChatMessage("user", "<a&b>"), ChatMessage("assistant", "x"),
         ChatMessage("user", "never")], tools=[{"name": "t"}])
    assert out == ('{"role": "user", "content": "<a&b>"}{"role": "assistant", "content": "x"}'
                   '|2|[{"name": "t"}]')


def test_tool_messages_carry_their_call_id_and_name() -> None:
    source = "{% for m in messages %}{{ m.tool_call_id }}:{{ m.name }}:{{ m.content }}{% endfor %}"
    out = ChatTemplate.from_source(source).render(
        [ChatMessage("tool", "42", tool_call_id="c7", name="calc")], add_generation_prompt=False)
    assert out == "c7:calc:42"


def test_no_tools_is_none_for_templates_that_test_for_it() -> None:
    template = ChatTemplate.from_source("{{ 'none' if tools is none else 'some' }}")
    out = template.render([ChatMessage("user", "x")])
    assert out == "none"


def test_template_flags_reach_the_template() -> None:
    source = "{{ add_generation_prompt }} {{ enable_thinking }} {{ bos_token }}{{ eos_token }}"
    template = ChatTemplate.from_source(source, bos_token="B", eos_token="E")
    assert template.render([], add_generation_prompt=False, enable_thinking=True) == "False True BE"


def test_sandbox_refuses_unsafe_attribute_access() -> None:
    source = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(TemplateError):
        ChatTemplate.from_source(source).render([ChatMessage("user", "x")])


def test_sandbox_refuses_mutating_the_conversation() -> None:
    with pytest.raises(TemplateError):
        ChatTemplate.from_source("{{ messages.append(1) }}").render([ChatMessage("user", "x")])


def test_a_broken_template_is_reported_when_compiled() -> None:
    with pytest.raises(TemplateError, match="does not compile"):
        ChatTemplate.from_source("{% for m in messages %}{{ m.content }}")


def test_strftime_now_is_available() -> None:
    out = ChatTemplate.from_source("{{ strftime_now('%Y') }}").render([])
    assert len(out) == 4 and out.isdigit()


@pytest.mark.parametrize("architecture,tokens,preset", [
    ("gemma3", {"<end_of_turn>", "<eos>"}, "gemma"),
    ("llama", {"<|eot_id|>", "<|begin_of_text|>"}, "llama3"),
    ("qwen2", {"<|im_end|>", "<|endoftext|>"}, "chatml"),
    ("qwen3", {"<|im_end|>", "<|endoftext|>"}, "qwen3"),
    ("phi3", {"<|end|>", "<|endoftext|>"}, "phi3"),
    ("deepseek2", {"<｜end▁of▁sentence｜>"}, "deepseek"),
    ("llama", {"</s>"}, None),  # a base model: no chat markers, no guess
])
def test_guess_preset_from_vocabulary(architecture: str, tokens: set[str], preset: str | None) -> None:
    assert guess_preset(architecture, tokens.__contains__) == preset
