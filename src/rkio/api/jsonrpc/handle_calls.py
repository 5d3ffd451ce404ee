"""The rkllm functions that change or query a lease's handle state without generating: LoRA, prompt cache,
KV cache, chat template, function tools, cross-attention parameters.

Template, tools, cross-attention parameters and the loaded prompt cache are stored on the lease and reach the
shared handle with the lease's next run (``HandleState``); LoRA loading and the KV-cache calls run in the
lease's runner (``Engine.runtime_call``). Each checks the runtime's features first: a generation that lacks
the function answers -32006 "not supported by runtime X".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rkio.api.jsonrpc.dispatcher import CallContext, Handler
from rkio.api.jsonrpc.leases import Lease
from rkio.api.jsonrpc.params import inside, validate, validate_member
from rkio.api.jsonrpc.protocol import InvalidParams
from rkio.api.jsonrpc.runs import RunMethods
from rkio.api.jsonrpc.structs import ChatTemplate, ClearKv, CrossAttn, FunctionTools, LoraAdapter, flat_floats
from rkio.config import Settings
from rkio.engine.types import Engine, RuntimeCall
from rkio.runtime.base import ChatTemplateOverride, CrossAttnParams, Feature
from rkio.runtime.base import FunctionTools as RuntimeFunctionTools


class HandleCalls:
    def __init__(self, engine: Engine, settings: Settings, runs: RunMethods) -> None:
        self.engine = engine
        self.runs = runs  # where prompt-cache files live
        self.models_root = Path(os.path.abspath(settings.models_dir.expanduser()))

    def handlers(self) -> dict[str, Handler]:
        return {
            "rkllm.load_lora": self.load_lora,
            "rkllm.load_prompt_cache": self.load_prompt_cache,
            "rkllm.release_prompt_cache": self.release_prompt_cache,
            "rkllm.clear_kv_cache": self.clear_kv_cache,
            "rkllm.get_kv_cache_size": self.get_kv_cache_size,
            "rkllm.set_chat_template": self.set_chat_template,
            "rkllm.set_function_tools": self.set_function_tools,
            "rkllm.set_cross_attn_params": self.set_cross_attn_params,
        }

    async def _runtime_call(self, lease: Lease, call: RuntimeCall) -> object:
        try:
            return await self.engine.runtime_call(lease.engine_lease, call)
        except Exception as exc:
            if getattr(exc, "kind", None) == "runner_crashed":
                lease.dead = str(exc)
            raise

    async def load_lora(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = ctx.lease()
        lease.require(Feature.LORA)
        if "path" in params and "lora_adapter" not in params:  # nano's first generation: {path}
            params = {
                "lora_adapter_path": params.pop("path"),
                "lora_adapter_name": params.pop("name", "default"),
                **params,
            }
        adapter = validate_member(LoraAdapter, params, "lora_adapter")
        root = self.models_root
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
        lease, params = ctx.lease()
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
        lease, _ = ctx.lease()
        lease.require(Feature.PROMPT_CACHE)
        lease.state.prompt_cache_path = None
        return {"success": True, "message": "Prompt cache released successfully"}

    async def clear_kv_cache(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = ctx.lease()
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
        lease, _ = ctx.lease()
        lease.require(Feature.KV_CACHE_SIZE)
        sizes = await self._runtime_call(lease, RuntimeCall("get_kv_cache_size", {}))
        return {
            "success": True,
            "message": "KV cache size retrieved successfully",
            "cache_sizes": list(sizes) if isinstance(sizes, list | tuple) else [],
        }

    async def set_chat_template(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = ctx.lease()
        lease.require(Feature.CHAT_TEMPLATE)
        template = validate_member(ChatTemplate, params, "template_config")
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
        lease, params = ctx.lease()
        lease.require(Feature.FUNCTION_TOOLS)
        tools = validate(FunctionTools, params)
        text = tools.tools if isinstance(tools.tools, str) else json.dumps(tools.tools, ensure_ascii=False)
        lease.state.function_tools = RuntimeFunctionTools(tools.system_prompt, text, tools.tool_response_str)
        return {"success": True, "message": "Function tools configuration set successfully"}

    async def set_cross_attn_params(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = ctx.lease()
        lease.require(Feature.CROSS_ATTN)
        cross = validate_member(CrossAttn, params, "cross_attn_params")
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
