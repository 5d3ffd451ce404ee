"""The 15 rkllm functions and ``rkllm.get_constants``, on leases (``rkio.api.jsonrpc.leases``).

Handle state (chat template, function tools, cross-attention params, prompt cache, selected LoRA) is kept
per lease here and travels with each of the lease's runs as ``HandleState``; the runner puts its handle into
that state before the run and clears KV content another lease left, so nothing leaks between clients.
Generations are in ``rkio.api.jsonrpc.runs``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import logging
from pathlib import Path
from typing import Any

from rkio.api.jsonrpc.dispatcher import CallContext, Handler
from rkio.api.jsonrpc.leases import Lease
from rkio.api.jsonrpc.params import inside, pop_common, validate
from rkio.api.jsonrpc.protocol import InvalidParams
from rkio.api.jsonrpc.runs import RunMethods
from rkio.api.jsonrpc.structs import (
    INFER_MODES,
    INPUT_TYPES,
    ChatTemplate,
    ClearKv,
    CrossAttn,
    FunctionTools,
    LoraAdapter,
    RKLLMParam,
    flat_floats,
)
from rkio.config import Settings
from rkio.engine.types import Engine, LoadOverrides, RuntimeCall
from rkio.errors import ModelNotFound, RunnerCrashed
from rkio.runtime.base import ChatTemplateOverride, CrossAttnParams, Feature
from rkio.runtime.base import FunctionTools as RuntimeFunctionTools

log = logging.getLogger("rkio.jsonrpc")

CALL_STATES = {"RKLLM_RUN_NORMAL": 0, "RKLLM_RUN_WAITING": 1, "RKLLM_RUN_FINISH": 2, "RKLLM_RUN_ERROR": 3}
CPU_MASKS = {f"CPU{i}": 1 << i for i in range(8)}
# rkllm_createDefaultParam's documented defaults (rkllm-runtime.md §1.2; the simulator returns the same)
DEFAULT_PARAM: dict[str, Any] = {
    "model_path": None,
    "max_context_len": 512,
    "max_new_tokens": -1,
    "top_k": 40,
    "n_keep": 0,
    "top_p": 0.9,
    "temperature": 0.8,
    "repeat_penalty": 1.1,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "mirostat": 0,
    "mirostat_tau": 5.0,
    "mirostat_eta": 0.1,
    "skip_special_token": True,
    "is_async": False,
    "img_start": None,
    "img_end": None,
    "img_content": None,
    "extend_param": {
        "base_domain_id": 0,
        "embed_flash": 0,
        "enabled_cpus_num": 4,
        "enabled_cpus_mask": 0,
        "n_batch": 1,
        "use_cross_attn": 0,
        "reserved": None,
    },
}
_OVERRIDE_FIELDS = (
    "max_context_len",
    "max_new_tokens",
    "top_k",
    "top_p",
    "temperature",
    "repeat_penalty",
    "frequency_penalty",
    "presence_penalty",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
    "n_keep",
    "skip_special_token",
    "ignore_eos_token",
)
_EXTEND_FIELDS = ("base_domain_id", "embed_flash", "enabled_cpus_mask", "n_batch", "use_cross_attn")


@functools.cache
def server_runtime() -> tuple[str | None, frozenset[str]]:
    """The installed rkllm library's runtime name and features (for get_constants without a handle)."""
    from rkio.runtime.rkllm.detect import resolve
    from rkio.runtime.rkllm.features import features_of
    from rkio.runtime.rkllm.layouts import Generation

    try:
        _, generation, version = resolve(None, None)
    except Exception:  # no library here: describe the newest ABI
        return None, frozenset(features_of(Generation.V1_3_0, None))
    return f"rkllm-{version or generation.label}", frozenset(features_of(generation, version))


def constants(runtime: str | None, features: frozenset[str]) -> dict[str, Any]:
    modes = {"RKLLM_INFER_GENERATE": 0}
    if Feature.LAST_HIDDEN_LAYER in features:
        modes["RKLLM_INFER_GET_LAST_HIDDEN_LAYER"] = INFER_MODES["RKLLM_INFER_GET_LAST_HIDDEN_LAYER"]
    if Feature.LOGITS in features:
        modes["RKLLM_INFER_GET_LOGITS"] = INFER_MODES["RKLLM_INFER_GET_LOGITS"]
    return {
        "LLM_CALL_STATES": dict(CALL_STATES),
        "INPUT_TYPES": dict(INPUT_TYPES),
        "INFER_MODES": modes,
        "CPU_MASKS": dict(CPU_MASKS) if Feature.CPU_MASK in features else {},
        "RUNTIME": runtime,
    }


class RkllmMethods:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.runs = RunMethods(engine, settings)

    def handlers(self) -> dict[str, Handler]:
        return {
            "rkllm.createDefaultParam": self.create_default_param,
            "rkllm.get_constants": self.get_constants,
            "rkllm.init": self.init,
            "rkllm.destroy": self.destroy,
            "rkllm.load_lora": self.load_lora,
            "rkllm.load_prompt_cache": self.load_prompt_cache,
            "rkllm.release_prompt_cache": self.release_prompt_cache,
            "rkllm.clear_kv_cache": self.clear_kv_cache,
            "rkllm.get_kv_cache_size": self.get_kv_cache_size,
            "rkllm.set_chat_template": self.set_chat_template,
            "rkllm.set_function_tools": self.set_function_tools,
            "rkllm.set_cross_attn_params": self.set_cross_attn_params,
            **self.runs.handlers(),
        }

    def lease(self, ctx: CallContext) -> tuple[Lease, dict[str, Any]]:
        params, handle_id, _ = pop_common(ctx.params)
        lease = ctx.session.leases.get(handle_id)
        if lease.dead is not None:
            raise RunnerCrashed(
                f"handle {lease.handle_id} is dead: {lease.dead}; call rkllm.destroy and rkllm.init again"
            )
        return lease, params

    async def create_default_param(self, ctx: CallContext) -> dict[str, Any]:
        return copy.deepcopy(DEFAULT_PARAM)

    async def get_constants(self, ctx: CallContext) -> dict[str, Any]:
        if ctx.params.get("handle_id") is not None or (
            len(ctx.session.leases) == 1 and not ctx.session.leases.shared
        ):
            lease, _ = self.lease(ctx)
            return constants(lease.runtime, lease.features)
        runtime, features = await asyncio.to_thread(server_runtime)
        return constants(runtime, features)

    # ---------------------------------------------------------------------------------------- lifecycle

    def model_name(self, value: str) -> str:
        """A model name, or a path to a file inside the models directory -> the model's name."""
        if "/" not in value and not value.endswith((".rkllm", ".gguf")):
            try:
                return self.engine.model(value).name
            except ModelNotFound:
                raise InvalidParams(
                    f"model_path {value!r} is not a model in the models directory", "model_path"
                ) from None
        path = inside(self.settings.models_dir, value, "model_path")
        for spec in self.engine.models():
            spec_path = Path(spec.path).resolve()
            if path in (spec_path, spec_path.parent):
                return spec.name
        raise InvalidParams(f"model_path {value!r} is not a model file in the models directory", "model_path")

    async def init(self, ctx: CallContext) -> dict[str, Any]:
        params, _, _ = pop_common(ctx.params)
        nested = params.pop("param", None)
        model = params.pop("model", None)
        if nested is not None and not isinstance(nested, dict):
            raise InvalidParams("param must be an RKLLMParam object", "param")
        merged = {**params, **(nested or {})}
        param = validate(RKLLMParam, merged, "param" if nested is not None else "")
        name = model or param.model_path or params.get("model_path")
        if not isinstance(name, str) or not name:
            raise InvalidParams(
                "model_path is required (a model name or a file in the models directory)", "model_path"
            )
        model_name = self.model_name(name)
        overrides = {f: getattr(param, f) for f in _OVERRIDE_FIELDS if getattr(param, f) is not None}
        if param.extend_param is not None:
            overrides.update(
                {
                    f: getattr(param.extend_param, f)
                    for f in _EXTEND_FIELDS
                    if getattr(param.extend_param, f) is not None
                }
            )
        leases = ctx.session.leases
        handle_id = leases.new_id()
        engine_lease = await self.engine.open_lease(
            model_name, LoadOverrides(**overrides) if overrides else None
        )
        try:
            info = self.engine.lease_info(engine_lease)
        except BaseException:
            await self.engine.close_lease(engine_lease)
            raise
        load = {
            f: getattr(info.load, f)
            for f in (
                "max_context_len",
                "max_new_tokens",
                "n_keep",
                "base_domain_id",
                "embed_flash",
                "enabled_cpus_mask",
                "n_batch",
                "use_cross_attn",
                "skip_special_token",
            )
        }
        lease = leases.add(
            Lease(
                handle_id,
                engine_lease,
                model_name,
                info.runtime,
                frozenset(info.features),
                load,
                leases.clock(),
            )
        )
        if ctx.session.closed:  # the connection went away while the model loaded
            await leases.close(lease)
        return {
            "success": True,
            "handle_id": handle_id,
            "model": model_name,
            "runtime": info.runtime,
            "param": load,
            "message": "Model initialized successfully",
        }

    async def destroy(self, ctx: CallContext) -> dict[str, Any]:
        _, handle_id, _ = pop_common(ctx.params)
        lease = ctx.session.leases.get(handle_id)
        await ctx.session.leases.close(lease)
        return {"success": True, "message": "Model destroyed successfully"}

    # ---------------------------------------------------------------------------------------- handle state

    async def _runtime_call(self, lease: Lease, call: RuntimeCall) -> object:
        try:
            return await self.engine.runtime_call(lease.engine_lease, call)
        except Exception as exc:
            if getattr(exc, "kind", None) == "runner_crashed":
                lease.dead = str(exc)
            raise

    async def load_lora(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = self.lease(ctx)
        lease.require(Feature.LORA)
        fields = params.get("lora_adapter", params)
        if isinstance(fields, dict) and "path" in fields and "lora_adapter_path" not in fields:
            fields = {
                "lora_adapter_path": fields["path"],
                "lora_adapter_name": fields.get("name", "default"),
                **({"scale": fields["scale"]} if "scale" in fields else {}),
            }
        adapter = validate(
            LoraAdapter,
            fields if isinstance(fields, dict) else {},
            "lora_adapter" if "lora_adapter" in params else "",
        )
        root = self.settings.models_dir.expanduser().resolve()
        path = inside(root, adapter.lora_adapter_path, "lora_adapter_path")
        if not path.is_file():
            raise InvalidParams(
                f"LoRA adapter {adapter.lora_adapter_path!r} does not exist", "lora_adapter_path"
            )
        await self._runtime_call(
            lease,
            RuntimeCall(
                "load_lora",
                {
                    "lora_adapter_path": str(path.relative_to(root)),
                    "lora_adapter_name": adapter.lora_adapter_name,
                    "scale": adapter.scale,
                },
            ),
        )
        lease.state.loras[adapter.lora_adapter_name] = str(path)
        return {
            "success": True,
            "message": "LoRA adapter loaded successfully",
            "lora_adapter_name": adapter.lora_adapter_name,
        }

    async def load_prompt_cache(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = self.lease(ctx)
        lease.require(Feature.PROMPT_CACHE)
        value = params.get("prompt_cache_path", params.get("path"))
        if not isinstance(value, str) or not value:
            raise InvalidParams("prompt_cache_path is required", "prompt_cache_path")
        path = self.runs.prompt_cache_file(value)
        if not path.is_file():
            raise InvalidParams(f"Prompt cache file does not exist: {value}", "prompt_cache_path")
        lease.state.prompt_cache_path = str(path)
        return {"success": True, "message": "Prompt cache loaded successfully", "cache_path": value}

    async def release_prompt_cache(self, ctx: CallContext) -> dict[str, Any]:
        lease, _ = self.lease(ctx)
        lease.require(Feature.PROMPT_CACHE)
        lease.state.prompt_cache_path = None
        return {"success": True, "message": "Prompt cache released successfully"}

    async def clear_kv_cache(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = self.lease(ctx)
        lease.require(Feature.CLEAR_KV_CACHE)
        args = validate(ClearKv, params)
        call: dict[str, Any] = {"keep_system_prompt": args.keep_system_prompt}
        if args.start_pos is not None or args.end_pos is not None:
            lease.require(Feature.CLEAR_KV_CACHE_RANGES)
            if args.start_pos is None or args.end_pos is None or len(args.start_pos) != len(args.end_pos):
                raise InvalidParams("start_pos and end_pos must be arrays of the same length", "end_pos")
            call["ranges"] = [[s, e] for s, e in zip(args.start_pos, args.end_pos, strict=True)]
        await self._runtime_call(lease, RuntimeCall("clear_kv_cache", call))
        lease.state.keeps_history = False
        return {
            "success": True,
            "message": "KV cache cleared successfully",
            "keep_system_prompt": int(args.keep_system_prompt),
        }

    async def get_kv_cache_size(self, ctx: CallContext) -> dict[str, Any]:
        lease, _ = self.lease(ctx)
        lease.require(Feature.KV_CACHE_SIZE)
        sizes = await self._runtime_call(lease, RuntimeCall("get_kv_cache_size", {}))
        return {
            "success": True,
            "message": "KV cache size retrieved successfully",
            "cache_sizes": list(sizes) if isinstance(sizes, list | tuple) else [],
        }

    async def set_chat_template(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = self.lease(ctx)
        lease.require(Feature.CHAT_TEMPLATE)
        nested = "template_config" in params
        fields = params["template_config"] if nested else params
        template = validate(
            ChatTemplate, fields if isinstance(fields, dict) else {}, "template_config" if nested else ""
        )
        system = template.system_prompt if template.system_prompt is not None else template.chat_template
        lease.state.chat_template = ChatTemplateOverride(
            system or "", template.prompt_prefix or "", template.prompt_postfix or ""
        )
        return {
            "success": True,
            "message": "Chat template set successfully",
            **{
                k: v
                for k, v in (
                    ("system_prompt", system),
                    ("prompt_prefix", template.prompt_prefix),
                    ("prompt_postfix", template.prompt_postfix),
                )
                if v is not None
            },
        }

    async def set_function_tools(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = self.lease(ctx)
        lease.require(Feature.FUNCTION_TOOLS)
        tools = validate(FunctionTools, params)
        text = tools.tools if isinstance(tools.tools, str) else json.dumps(tools.tools, ensure_ascii=False)
        lease.state.function_tools = RuntimeFunctionTools(tools.system_prompt, text, tools.tool_response_str)
        return {"success": True, "message": "Function tools configuration set successfully"}

    async def set_cross_attn_params(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = self.lease(ctx)
        lease.require(Feature.CROSS_ATTN)
        nested = "cross_attn_params" in params
        fields = params["cross_attn_params"] if nested else params
        cross = validate(
            CrossAttn, fields if isinstance(fields, dict) else {}, "cross_attn_params" if nested else ""
        )
        positions = struct_ints(cross.encoder_pos, "encoder_pos")
        lease.state.cross_attn = CrossAttnParams(
            flat_floats(cross.encoder_k_cache, "encoder_k_cache"),
            flat_floats(cross.encoder_v_cache, "encoder_v_cache"),
            flat_floats(cross.encoder_mask, "encoder_mask"),
            positions,
            cross.num_tokens,
        )
        return {
            "success": True,
            "message": "Cross-attention parameters set successfully",
            "num_tokens": cross.num_tokens,
        }


def struct_ints(value: Any, field: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise InvalidParams(f"{field} must be an array of integers", field)
    return tuple(value)
