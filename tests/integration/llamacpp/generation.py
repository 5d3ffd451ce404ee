"""Running one generation on a loaded LlamaCppRuntime and collecting its text."""

from __future__ import annotations

from rkio.engine.types import ChatMessage
from rkio.runtime.base import GenerateParams, GenerationResult, Token
from rkio.runtime.llamacpp import LlamaCppRuntime


def chat(runtime: LlamaCppRuntime, messages: list[ChatMessage] | str,
         **params: object) -> tuple[str, GenerationResult]:
    """Render ``messages`` (or one user message) with the model's template and complete it."""
    template = runtime.chat_template()
    assert template is not None
    if isinstance(messages, str):
        messages = [ChatMessage("user", messages)]
    return complete(runtime, template.render(messages), **params)


def complete(runtime: LlamaCppRuntime, prompt: str, **params: object) -> tuple[str, GenerationResult]:
    tokens: list[Token] = []

    def sink(token: Token) -> bool:
        tokens.append(token)
        return True

    result = runtime.generate(GenerateParams(prompt=prompt, **params), sink)  # type: ignore[arg-type]
    return "".join(t.text for t in tokens), result
