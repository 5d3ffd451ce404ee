"""nano's ``image.*`` and ``rknn.*`` methods on the IO API, as leases like rkllm handles.

The encoder of a vision model runs in that model's runner (``rkio.engine.runner.vision``), never in the
server: ``rknn.init`` / ``image.init_processor`` on the model (its name, its folder or its ``.rknn`` file)
open a lease on it exactly as ``rkllm.init`` does, and the returned ``context`` / ``handle_id`` is a lease id
of the same table. ``image.process`` preprocesses and encodes an image, returning the embedding that
``rkllm.run`` takes as ``multimodal_input``; it also works on an ``rkllm.init`` handle of a vision model.
``rknn.inputs_set`` keeps the input tensor on the lease, ``rknn.run`` runs it in the runner, and
``rknn.outputs_get`` hands out the float32 output (``rknn.outputs_release`` drops it).
"""

from __future__ import annotations

import base64
import binascii
import os
import struct
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rkio.api.jsonrpc.dispatcher import CallContext, Handler
from rkio.api.jsonrpc.leases import Lease
from rkio.api.jsonrpc.params import inside, pop_common
from rkio.api.jsonrpc.protocol import InvalidParams
from rkio.config import Settings
from rkio.engine.types import Engine, RuntimeCall
from rkio.runtime.rknn import layouts

MAX_TENSOR_BYTES = 64 << 20
CORE_MASKS = {"RKNN_NPU_CORE_AUTO": 0, "RKNN_NPU_CORE_0": 1, "RKNN_NPU_CORE_1": 2, "RKNN_NPU_CORE_2": 4,
              "RKNN_NPU_CORE_0_1": 3, "RKNN_NPU_CORE_0_1_2": 7}  # rknn_api.h rknn_core_mask


@dataclass(slots=True)
class RknnState:
    """One rknn context's I/O between calls (kept in the server; the encoder runs in the runner)."""

    tensor: bytes | None = None
    tensor_type: int = layouts.TENSOR_UINT8
    channels_last: bool = True
    output: bytes | None = None


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidParams(f"{field} must be base64 text", field)
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidParams(f"{field} is not valid base64: {exc}", field) from exc


def _enum(value: Any, names: dict[str, int], field: str, default: int) -> int:
    """An rknn enum given as its number or its name (the sandbox sends names such as "RKNN_TENSOR_UINT8")."""
    if value is None:
        return default
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, int) and not isinstance(value, bool) and value in names.values():
        return value
    raise InvalidParams(f"{field} must be one of {', '.join(names)}", field)


def _floats(data: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(data) // 4}f", data))


class VisionMethods:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.models_root = Path(os.path.abspath(settings.models_dir.expanduser()))
        self._states: weakref.WeakKeyDictionary[Any, dict[int, RknnState]] = weakref.WeakKeyDictionary()

    def handlers(self) -> dict[str, Handler]:
        return {
            "image.init_processor": self.open,
            "image.process": self.process,
            "image.cleanup_processor": self.close,
            "rknn.init": self.open,
            "rknn.query": self.query,
            "rknn.inputs_set": self.inputs_set,
            "rknn.run": self.run,
            "rknn.outputs_get": self.outputs_get,
            "rknn.outputs_release": self.outputs_release,
            "rknn.destroy": self.close,
            "rknn.get_constants": self.get_constants,
        }

    # -------------------------------------------------------------------------------------- lifecycle

    def vision_model(self, value: Any) -> str:
        """A vision model's name from its name, its folder or its encoder file (inside the models dir)."""
        if not isinstance(value, str) or not value:
            raise InvalidParams("model_path is required (a vision model or its .rknn file)", "model_path")
        named_by_path = "/" in value or value.endswith(".rknn")
        path = inside(self.models_root, value, "model_path") if named_by_path else None
        for spec in self.engine.models():
            if spec.vision is None:
                continue
            if path is None and spec.name == value:
                return spec.name
            if path is not None and path in (Path(spec.vision.encoder_path), Path(spec.path).parent):
                return spec.name
        raise InvalidParams(f"model_path {value!r} is not a vision model (a folder with a [vision] "
                            "table in its model.toml)", "model_path")

    async def open(self, ctx: CallContext) -> dict[str, Any]:
        params, _, _ = pop_common(ctx.params)
        name = self.vision_model(params.get("model_path", params.get("model")))
        leases = ctx.session.leases
        handle_id = leases.new_id()
        engine_lease = await self.engine.open_lease(name, None)
        try:
            info = self.engine.lease_info(engine_lease)
        except BaseException:
            await self.engine.close_lease(engine_lease)
            raise
        lease = leases.add(Lease(handle_id, engine_lease, name, info.runtime, frozenset(info.features), {},
                                 leases.clock()))
        if ctx.session.closed:
            await leases.close(lease)
        return {"success": True, "message": "Vision model initialized successfully", "context": handle_id,
                "handle_id": handle_id, "model": name}

    def _lease(self, ctx: CallContext) -> tuple[Lease, dict[str, Any]]:
        if "context" in ctx.params and "handle_id" not in ctx.params:
            ctx.params["handle_id"] = ctx.params.pop("context")
        return ctx.lease()

    def _state(self, ctx: CallContext, lease: Lease) -> RknnState:
        table = self._states.setdefault(ctx.session, {})
        return table.setdefault(lease.handle_id, RknnState())

    async def close(self, ctx: CallContext) -> dict[str, Any]:
        lease, _ = self._lease(ctx)
        self._states.get(ctx.session, {}).pop(lease.handle_id, None)
        await ctx.session.leases.close(lease)
        return {"success": True, "message": "Vision model destroyed successfully"}

    async def _call(self, lease: Lease, op: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            value = await self.engine.runtime_call(lease.engine_lease, RuntimeCall(op, args))  # type: ignore[arg-type]
        except Exception as exc:
            if getattr(exc, "kind", None) == "runner_crashed":
                lease.dead = str(exc)
            raise
        assert isinstance(value, dict)
        return value

    # ----------------------------------------------------------------------------------------- image.*

    async def process(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = self._lease(ctx)
        image = _b64(params.get("image_data", params.get("image")), "image_data")
        value = await self._call(lease, "encode_image", {"image": image})
        embedding = value["embedding"]
        return {"success": True, "embeddings": _floats(embedding), "embedding_size": len(embedding) // 4,
                "n_image_tokens": value["n_image_tokens"], "embed_dim": value["embed_dim"]}

    # ------------------------------------------------------------------------------------------ rknn.*

    async def query(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = self._lease(ctx)
        kind = params.get("query_type", "sdk_version")
        value = await self._call(lease, "rknn_query", {})
        if kind == "sdk_version":
            return {"success": True, "api_version": lease.runtime, "driver_version": None}
        if kind == "in_out_num":
            return {"success": True, "n_input": 1, "n_output": 1}
        if kind == "input_attr":
            side = [value["height"], value["width"]]
            dims = [1, *side, 3] if value["channels_last"] else [1, 3, *side]
            fmt = layouts.TENSOR_NHWC if value["channels_last"] else layouts.TENSOR_NCHW
            return {"success": True, "index": 0, "n_dims": 4, "dims": dims, "fmt": fmt,
                    "type": value["input_type"], "n_elems": dims[1] * dims[2] * dims[3]}
        if kind == "output_attr":
            dims = [1, value["n_image_tokens"], value["embed_dim"]]
            return {"success": True, "index": 0, "n_dims": 3, "dims": dims,
                    "type": layouts.TENSOR_FLOAT32, "n_elems": dims[1] * dims[2]}
        raise InvalidParams("query_type must be sdk_version, in_out_num, input_attr or output_attr",
                            "query_type")

    async def inputs_set(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = self._lease(ctx)
        inputs = params.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
            raise InvalidParams("inputs must hold the encoder's one input", "inputs")
        item = inputs[0]
        if item.get("index", 0) != 0:
            raise InvalidParams("the encoder has one input, index 0", "inputs.0.index")
        data = _b64(item.get("data", item.get("buf")), "inputs.0.data")
        if len(data) > MAX_TENSOR_BYTES:
            raise InvalidParams(f"input tensor larger than {MAX_TENSOR_BYTES} bytes", "inputs.0.data")
        state = self._state(ctx, lease)
        state.tensor_type = _enum(item.get("type"), layouts.TENSOR_TYPES, "inputs.0.type",
                                  layouts.TENSOR_UINT8)
        fmt = _enum(item.get("fmt"), layouts.TENSOR_FORMATS, "inputs.0.fmt", layouts.TENSOR_NHWC)
        if fmt not in (layouts.TENSOR_NHWC, layouts.TENSOR_NCHW):
            raise InvalidParams("fmt must be RKNN_TENSOR_NHWC or RKNN_TENSOR_NCHW", "inputs.0.fmt")
        state.channels_last, state.tensor, state.output = fmt == layouts.TENSOR_NHWC, data, None
        return {"success": True, "message": "Inputs set successfully"}

    async def run(self, ctx: CallContext) -> dict[str, Any]:
        lease, _ = self._lease(ctx)
        state = self._state(ctx, lease)
        if state.tensor is None:
            raise InvalidParams("call rknn.inputs_set first", "inputs")
        value = await self._call(lease, "rknn_run", {"tensor": state.tensor, "type": state.tensor_type,
                                                      "channels_last": state.channels_last})
        state.output = value["output"]
        output = {"index": 0, "size": len(state.output), "want_float": True, "is_prealloc": False}
        return {"success": True, "message": "Inference completed successfully", "outputs": [output]}

    async def outputs_get(self, ctx: CallContext) -> dict[str, Any]:
        lease, params = self._lease(ctx)
        state = self._state(ctx, lease)
        if state.output is None:
            raise InvalidParams("no output: call rknn.run first", "outputs")
        extend = params.get("extend") or {}
        full = isinstance(extend, dict) and bool(extend.get("return_full_data"))
        out: dict[str, Any] = {"index": 0, "size": len(state.output), "want_float": True}
        if full:
            out["data"] = _floats(state.output)
        else:
            out["buf"] = base64.b64encode(state.output).decode()  # little-endian float32
        return {"success": True, "n_outputs": 1, "outputs": [out]}

    async def outputs_release(self, ctx: CallContext) -> dict[str, Any]:
        lease, _ = self._lease(ctx)
        self._state(ctx, lease).output = None
        return {"success": True, "message": "Outputs released successfully"}

    async def get_constants(self, ctx: CallContext) -> dict[str, Any]:
        return {"ERRORS": {name: code for code, name in layouts.ERRORS.items()},
                "FORMATS": dict(layouts.TENSOR_FORMATS), "TYPES": dict(layouts.TENSOR_TYPES),
                "QUERIES": dict(layouts.QUERIES), "CORE_MASKS": dict(CORE_MASKS)}
