"""``rkllm.run`` / ``run_async`` / ``abort`` / ``is_running`` on a lease.

The input may come flat (nano's latest), under ``rkllm_input`` / ``rkllm_infer_params`` (the C parameter
names), or positionally; it becomes a raw runtime input (``GenerateParams``, no chat template rendering by
rkio) plus the lease's ``HandleState``. Hidden-state and logits runs return float arrays: JSON numbers up to
``INLINE_FLOATS`` values, base64 of little-endian float32 above.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import pydantic

from rkio.api.engine_request import request_id, resolve_sampling
from rkio.api.jsonrpc.delivery import deliver
from rkio.api.jsonrpc.dispatcher import CallContext, Handler
from rkio.api.jsonrpc.leases import Lease
from rkio.api.jsonrpc.params import inside, invalid_params, pop_common
from rkio.api.jsonrpc.protocol import InvalidParams
from rkio.api.jsonrpc.streams import Generation, RunOutcome
from rkio.api.jsonrpc.structs import MODE_NAMES, RKLLMInferParam, RKLLMInput, float32_bytes
from rkio.config import Settings
from rkio.engine.types import Engine, GenerationRequest, HandleState
from rkio.errors import Busy, RunnerCrashed
from rkio.runtime.base import Feature, GenerateParams, MultimodalInput, PromptCacheParams, RunOutputs

INLINE_FLOATS = 4096
INPUT_KEYS = frozenset(RKLLMInput.model_fields)
INFER_KEYS = frozenset(RKLLMInferParam.model_fields)
SAMPLING_KEYS = ("top_k", "top_p", "temperature", "repeat_penalty", "frequency_penalty", "presence_penalty")
_TYPE_FEATURES = {1: Feature.TOKEN_INPUT, 2: Feature.EMBED_INPUT, 3: Feature.MULTIMODAL_INPUT}
_MODE_FEATURES = {"hidden": Feature.LAST_HIDDEN_LAYER, "logits": Feature.LOGITS}


def split_run_params(params: dict[str, Any]) -> tuple[RKLLMInput, RKLLMInferParam]:
    """Input and infer params from the nested (C names, or nano's PRD names) and flat forms together."""
    rest = dict(params)
    input_key = "rkllm_input" if "rkllm_input" in rest else "input"
    infer_key = "rkllm_infer_params" if "rkllm_infer_params" in rest else "infer_params"
    nested_input, nested_infer = rest.pop(input_key, None) or {}, rest.pop(infer_key, None) or {}
    for key, value in ((input_key, nested_input), (infer_key, nested_infer)):
        if not isinstance(value, dict):
            raise InvalidParams(f"{key} must be an object", key)
    flat_input = {k: v for k, v in rest.items() if k in INPUT_KEYS}
    flat_infer = {k: v for k, v in rest.items() if k in INFER_KEYS and k not in INPUT_KEYS}
    unknown = sorted(set(rest) - INPUT_KEYS - INFER_KEYS)
    if unknown:
        raise InvalidParams(f"unknown field {unknown[0]!r} for rkllm.run", unknown[0])
    try:
        inp = RKLLMInput.model_validate({**flat_input, **nested_input})
    except Exception as exc:
        raise _as_params(exc, input_key if nested_input else "") from None
    try:
        infer = RKLLMInferParam.model_validate({**flat_infer, **nested_infer})
    except Exception as exc:
        raise _as_params(exc, infer_key if nested_infer else "") from None
    return inp, infer


def _as_params(exc: Exception, prefix: str) -> Exception:
    return invalid_params(exc, prefix) if isinstance(exc, pydantic.ValidationError) else exc


def encode_outputs(outputs: RunOutputs | None) -> dict[str, Any]:
    if outputs is None:
        return {}
    count = len(outputs.data) // 4
    num_tokens = outputs.shape[0] if outputs.shape else 0
    width = outputs.shape[-1] if outputs.shape else count
    if outputs.kind == "hidden":
        body: dict[str, Any] = {"embd_size": width, "num_tokens": num_tokens}
        key, name = "hidden_states", "last_hidden_layer"
    else:
        body, key, name = {"vocab_size": width, "num_tokens": num_tokens}, "logits", "logits"
    if count <= INLINE_FLOATS:
        body[key] = list(struct.unpack(f"<{count}f", outputs.data[: count * 4]))
    else:
        body[key + "_base64"] = base64.b64encode(outputs.data).decode()
    return {name: body}


class RunMethods:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings

    def handlers(self) -> dict[str, Handler]:
        return {
            "rkllm.run": self.run,
            "rkllm.run_async": self.run_async,
            "rkllm.abort": self.abort,
            "rkllm.is_running": self.is_running,
        }

    def prompt_cache_file(self, value: str) -> Path:
        """Prompt caches live under ``<state dir>/prompt-cache``; a client's path is taken relative to it."""
        root = self.settings.state_dir / "prompt-cache"
        root.mkdir(parents=True, exist_ok=True)
        return inside(
            root, value.lstrip("/") if not value.startswith(str(root)) else value, "prompt_cache_path"
        )

    def runtime_input(self, lease: Lease, inp: RKLLMInput, infer: RKLLMInferParam) -> GenerateParams:
        kind = inp.input_type
        if kind is None:
            kind = (
                1
                if inp.token_input
                else 2
                if inp.embed_input
                else 3
                if (inp.multimodal_input or inp.multimodal)
                else 0
            )
        if kind in _TYPE_FEATURES:
            lease.require(_TYPE_FEATURES[kind])
        fields: dict[str, Any] = {
            "role": inp.role,
            "enable_thinking": inp.enable_thinking,
            "keep_history": infer.keep_history,
            "mode": MODE_NAMES[infer.mode],
        }
        if kind == 0:
            text = inp.prompt if inp.prompt is not None else inp.prompt_input
            if text is None:
                raise InvalidParams(
                    "prompt (or prompt_input) is required for input_type RKLLM_INPUT_PROMPT", "prompt"
                )
            fields["prompt"] = text
        elif kind == 1:
            if inp.token_input is None:
                raise InvalidParams("token_input is required for RKLLM_INPUT_TOKEN", "token_input")
            fields["tokens"] = tuple(inp.token_input.input_ids)
        elif kind == 2:
            if inp.embed_input is None:
                raise InvalidParams("embed_input is required for RKLLM_INPUT_EMBED", "embed_input")
            fields["embed"] = float32_bytes(
                inp.embed_input.embed, inp.embed_input.embed_base64, "embed_input.embed"
            )
            fields["n_embed_tokens"] = inp.embed_input.n_tokens
        else:
            mm = inp.multimodal_input or inp.multimodal
            if mm is None:
                raise InvalidParams(
                    "multimodal_input is required for RKLLM_INPUT_MULTIMODAL", "multimodal_input"
                )
            fields["multimodal"] = MultimodalInput(
                mm.prompt,
                float32_bytes(mm.image_embed, mm.image_embed_base64, "multimodal_input.image_embed"),
                mm.n_image_tokens,
                mm.n_image,
                mm.image_width,
                mm.image_height,
            )
        if inp.enable_thinking:
            lease.require(Feature.ENABLE_THINKING)
        if infer.keep_history:
            lease.require(Feature.KEEP_HISTORY)
        if fields["mode"] in _MODE_FEATURES:
            lease.require(_MODE_FEATURES[fields["mode"]])
        if infer.lora_params is not None:
            name = infer.lora_params.lora_adapter_name
            known = set(lease.state.loras) | {a[0] for a in self.engine.model(lease.model).lora_adapters}
            if name not in known:
                raise InvalidParams(
                    f"LoRA adapter {name!r} is not loaded on this handle (call rkllm.load_lora)",
                    "lora_params.lora_adapter_name",
                )
            fields["lora"] = name
        if infer.prompt_cache_params is not None:
            lease.require(Feature.PROMPT_CACHE)
            cache = infer.prompt_cache_params
            fields["prompt_cache"] = PromptCacheParams(
                cache.save_prompt_cache, str(self.prompt_cache_file(cache.prompt_cache_path))
            )
        sampling = {k: getattr(infer, k) for k in SAMPLING_KEYS}
        fields["sampling"] = resolve_sampling(self.engine, lease.model, **sampling)
        fields["max_new_tokens"] = infer.max_new_tokens
        return GenerateParams(**fields)

    def handle_state(self, lease: Lease) -> HandleState:
        state = lease.state
        return HandleState(
            owner=lease.engine_lease,
            chat_template=state.chat_template,
            function_tools=state.function_tools,
            cross_attn=state.cross_attn,
            prompt_cache_path=state.prompt_cache_path,
        )

    async def run(self, ctx: CallContext, asynchronous: bool = False) -> Any:
        if "stream_id" in ctx.params:
            return {"chunks": ctx.pulls.pull(ctx.params["stream_id"])}
        lease, params = ctx.lease()
        stream = params.pop("stream", None)
        if lease.running is not None and lease.running.running:
            raise Busy(
                f"handle {lease.handle_id} is already running a generation (rkllm.abort stops it)",
                retry_after=1.0,
            )
        inp, infer = split_run_params(params)
        runtime_input = self.runtime_input(lease, inp, infer)
        request = GenerationRequest(
            model=lease.model,
            lease=lease.engine_lease,
            runtime_input=runtime_input,
            handle_state=self.handle_state(lease),
            request_id=request_id("rkllm"),
        )
        form = ctx.stream_form(stream, asynchronous=asynchronous)

        def result_of(outcome: RunOutcome) -> dict[str, Any]:
            lease.state.keeps_history = infer.keep_history
            return {
                "text": outcome.text,
                "token_ids": outcome.token_ids,
                "finish_reason": outcome.finish_reason,
                "perf": outcome.perf,
                "handle_id": lease.handle_id,
                **encode_outputs(outcome.done.outputs if outcome.done is not None else None),
            }

        def track(generation: Generation) -> None:
            lease.running = generation

        try:
            return await deliver(
                ctx,
                form,
                self.engine.generate(request),
                result_of,
                asynchronous=asynchronous,
                started={"handle_id": lease.handle_id},
                track=track,
            )
        except RunnerCrashed as exc:
            lease.dead = exc.message
            raise

    async def run_async(self, ctx: CallContext) -> Any:
        return await self.run(ctx, asynchronous=True)

    async def abort(self, ctx: CallContext) -> dict[str, Any]:
        _, handle_id, _ = pop_common(ctx.params)
        lease = ctx.session.leases.get(handle_id)
        stopped = lease.running is not None and lease.running.abort()
        return {
            "success": True,
            "message": "Task aborted successfully" if stopped else "No task was running",
            "status_code": 0,
        }

    async def is_running(self, ctx: CallContext) -> dict[str, Any]:
        _, handle_id, _ = pop_common(ctx.params)
        lease = ctx.session.leases.get(handle_id)
        running = lease.running is not None and lease.running.running
        # rkllm.h: rkllm_is_running returns 0 if a task is running, non-zero otherwise
        return {"is_running": running, "status_code": 0 if running else 1}
