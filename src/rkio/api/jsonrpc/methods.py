"""The 15 rkllm functions and ``rkllm.get_constants``, on leases (``rkio.api.jsonrpc.leases``).

Here: createDefaultParam, get_constants, init (opening a lease) and destroy. The calls on a handle's state
are in ``rkio.api.jsonrpc.handle_calls``, the generations in ``rkio.api.jsonrpc.runs``. Handle state is kept
per lease and travels with each of the lease's runs as ``HandleState``; the runner puts its handle into that
state before the run and clears KV content another lease left, so nothing leaks between clients.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import os
from pathlib import Path
from typing import Any

from rkio.api.jsonrpc.dispatcher import CallContext, Handler
from rkio.api.jsonrpc.handle_calls import HandleCalls
from rkio.api.jsonrpc.leases import Lease
from rkio.api.jsonrpc.params import inside, pop_common, validate
from rkio.api.jsonrpc.protocol import InvalidParams
from rkio.api.jsonrpc.runs import RunMethods
from rkio.api.jsonrpc.structs import (
    INFER_MODES,
    INPUT_TYPES,
    RKLLMParam,
)
from rkio.config import Settings
from rkio.engine.types import Engine, LoadOverrides
from rkio.errors import ModelNotFound
from rkio.runtime.base import Feature

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
            **HandleCalls(self.engine, self.settings, self.runs).handlers(),
            **self.runs.handlers(),
        }

    async def create_default_param(self, ctx: CallContext) -> dict[str, Any]:
        return copy.deepcopy(DEFAULT_PARAM)

    async def get_constants(self, ctx: CallContext) -> dict[str, Any]:
        if ctx.params.get("handle_id") is not None or (
            len(ctx.session.leases) == 1 and not ctx.session.leases.shared
        ):
            lease, _ = ctx.lease()
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
            spec_path = Path(os.path.abspath(spec.path))
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
