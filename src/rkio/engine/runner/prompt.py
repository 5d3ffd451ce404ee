"""Turning a ``RunnerGeneration`` into the runtime's input: chat rendering, stop strings, token counts."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from rkio.engine.runner.messages import RunnerGeneration
from rkio.engine.types import ChatMessage, ModelSpec
from rkio.runtime.base import GenerateParams, Perf, Runtime
from rkio.runtime.fit import fit_to_runtime

if TYPE_CHECKING:
    from rkio.runtime.chat import ChatTemplate

DEFAULT_TEMPLATE = "chatml"


def model_template(runtime: Runtime, spec: ModelSpec) -> ChatTemplate:
    """model.toml's ``chat_template`` first (the user's explicit choice), then the backend's own template
    (GGUF metadata), then ChatML. The backend's BOS/EOS tokens are kept for a model.toml template."""
    from rkio.runtime.chat import ChatTemplate

    own = runtime.chat_template()
    if spec.chat_template:
        bos, eos = (own.bos_token, own.eos_token) if own is not None else ("", "")
        return ChatTemplate.from_source(spec.chat_template, bos, eos)
    return own if own is not None else ChatTemplate.from_source(DEFAULT_TEMPLATE)


def with_system_prompt(
    messages: tuple[ChatMessage, ...], system_prompt: str | None
) -> tuple[ChatMessage, ...]:
    """Prepend the default system prompt unless the conversation brings its own."""
    if not system_prompt or any(m.role == "system" for m in messages):
        return messages
    return (ChatMessage(role="system", content=system_prompt), *messages)


def prepare(
    gen: RunnerGeneration, runtime: Runtime, spec: ModelSpec, template: ChatTemplate | None
) -> tuple[GenerateParams, tuple[str, ...]]:
    """The params to run (prompt rendered when ``gen.messages`` is set) and every stop string to watch."""
    params = gen.params
    stops = gen.stop
    if gen.messages is not None:
        if template is None:
            template = model_template(runtime, spec)
        prompt = template.render(
            with_system_prompt(gen.messages, gen.system_prompt),
            tools=gen.tools,
            add_generation_prompt=True,
            enable_thinking=params.enable_thinking,
        )
        params = replace(params, prompt=prompt)
        stops = (*stops, *template.stop_strings)
    # what the runtime lacks is left out, never refused (the gateway reports it, rkio.engine.run_plan);
    # max_new_tokens the runner then enforces itself by stopping the stream. An exact (raw IO API) input
    # keeps everything else, so the runtime refuses what it lacks and the caller hears which feature.
    fitted = fit_to_runtime(params, runtime.features, rendered=gen.messages is not None)
    if not gen.exact:
        params = fitted.params
    elif fitted.runner_limit:
        params = replace(params, max_new_tokens=None)
    return params, tuple(dict.fromkeys(s for s in stops if s))


def shared_prefix(gen: RunnerGeneration, template: ChatTemplate, prompt: str) -> str | None:
    """The rendered leading system message (with the tools list) when ``prompt`` starts with it: the part
    many conversations share. None for a chat without one, or a template that cannot render it alone."""
    from rkio.errors import RkioError

    if gen.messages is None:
        return None
    messages = with_system_prompt(gen.messages, gen.system_prompt)
    if not messages or messages[0].role != "system":
        return None
    try:
        prefix = template.render(messages[:1], tools=gen.tools, add_generation_prompt=False,
                                 enable_thinking=gen.params.enable_thinking)
    except RkioError:
        return None
    return prefix if len(prefix) < len(prompt) and prompt.startswith(prefix) else None


def estimate_tokens(text: str) -> int:
    """A rough count (about four bytes per token) for backends that cannot tokenize."""
    return max(1, (len(text.encode("utf-8")) + 3) // 4)


def prompt_tokens(params: GenerateParams, perf: Perf | None, runtime: Runtime) -> int:
    """Perf's prefill count when given, else the backend's tokenizer, else an estimate."""
    if perf is not None and perf.prefill_tokens > 0:
        return perf.prefill_tokens
    if params.tokens is not None:
        return len(params.tokens)
    if params.n_embed_tokens:
        return params.n_embed_tokens
    text = params.prompt or (params.multimodal.prompt if params.multimodal else "")
    counted = runtime.count_tokens(text)
    return counted if counted is not None else estimate_tokens(text)
