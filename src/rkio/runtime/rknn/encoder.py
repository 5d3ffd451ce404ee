"""One RKNN image encoder: rknn_init on the encoder file, then image tensors in, embedding rows out.

The sequence is the RKNN API's (rknn_api.h; the rknn-llm multimodal demo's image encoder does the same):
init, query the input/output counts and attributes, then per image inputs_set, run, outputs_get with
``want_float`` and outputs_release. Not thread-safe: one caller at a time (the runner runs one request).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

from rkio.errors import LoadFailed, RuntimeFailure
from rkio.runtime.rknn import layouts
from rkio.runtime.rknn.library import RknnLibrary, check_sdk_version


@dataclass(frozen=True, slots=True)
class EncoderInfo:
    """What the encoder model says about its tensors."""

    height: int
    width: int
    channels_last: bool  # input format NHWC (else NCHW)
    input_type: int  # rknn_tensor_type of the input the model wants
    image_tokens: int  # rows of one image's embedding
    embed_dim: int  # width of a row
    api_version: str
    driver_version: str

    @property
    def embedding_bytes(self) -> int:
        return self.image_tokens * self.embed_dim * 4


def _dims(attr: layouts.TensorAttr) -> list[int]:
    return [int(attr.dims[i]) for i in range(attr.n_dims)]


class RknnEncoder:
    """An initialised rknn_context on one encoder model."""

    def __init__(self, library: RknnLibrary, model_path: str | Path) -> None:
        self._lib = library
        self._ctx = layouts.Context(0)
        self._path = str(model_path)
        path = self._path.encode()
        # size 0: the model argument is a file path (rknn_api.h); the runtime reads the file itself
        ret = library.fn("rknn_init")(ctypes.byref(self._ctx), ctypes.c_char_p(path), 0, 0, None)
        if ret != 0:
            raise LoadFailed(f"rknn_init failed on {self._path}: {layouts.error_name(ret)} ({ret})")
        try:
            self.info = self._describe()
        except BaseException:
            self.close()
            raise

    def _query(self, cmd: int, struct: ctypes.Structure) -> None:
        ret = self._lib.fn("rknn_query")(self._ctx, cmd, ctypes.byref(struct), ctypes.sizeof(struct))
        if ret != 0:
            raise LoadFailed(f"rknn_query({cmd}) failed on {self._path}: {layouts.error_name(ret)}")

    def _describe(self) -> EncoderInfo:
        version = layouts.SdkVersion()
        self._query(layouts.QUERY_SDK_VERSION, version)
        api, drv = version.api_version.decode(errors="replace"), version.drv_version.decode(errors="replace")
        check_sdk_version(api)
        io = layouts.InputOutputNum()
        self._query(layouts.QUERY_IN_OUT_NUM, io)
        if io.n_input != 1 or io.n_output != 1:
            raise LoadFailed(f"{self._path}: an image encoder has one input and one output, this model has "
                             f"{io.n_input} and {io.n_output}")
        inp, out = layouts.TensorAttr(index=0), layouts.TensorAttr(index=0)
        self._query(layouts.QUERY_INPUT_ATTR, inp)
        self._query(layouts.QUERY_OUTPUT_ATTR, out)
        dims = _dims(inp)
        if len(dims) != 4:
            raise LoadFailed(f"{self._path}: encoder input has shape {dims}, expected an image (4 dims)")
        channels_last = inp.fmt == layouts.TENSOR_NHWC
        n_hwc = (dims[1], dims[2], dims[3]) if channels_last else (dims[2], dims[3], dims[1])
        height, width, channels = n_hwc
        if channels != 3:
            raise LoadFailed(f"{self._path}: encoder input has {channels} channels, expected RGB")
        out_dims = _dims(out)
        if not out_dims or out_dims[-1] <= 0:
            raise LoadFailed(f"{self._path}: encoder output has shape {out_dims}")
        embed_dim = out_dims[-1]
        return EncoderInfo(height, width, channels_last, int(inp.type), int(out.n_elems) // embed_dim,
                           embed_dim, api, drv)

    def encode(self, tensor: bytes, tensor_type: int, channels_last: bool) -> bytes:
        """The float32 embedding (image_tokens x embed_dim, row-major) of one preprocessed image."""
        if not self._ctx.value:
            raise RuntimeFailure("the image encoder is closed")
        buffer = ctypes.create_string_buffer(tensor, len(tensor))
        fmt = layouts.TENSOR_NHWC if channels_last else layouts.TENSOR_NCHW
        one = layouts.Input(index=0, buf=ctypes.cast(buffer, ctypes.c_void_p), size=len(tensor),
                            pass_through=0, type=tensor_type, fmt=fmt)
        inputs = (layouts.Input * 1)(one)
        self._check(self._lib.fn("rknn_inputs_set")(self._ctx, 1, inputs), "rknn_inputs_set")
        self._check(self._lib.fn("rknn_run")(self._ctx, None), "rknn_run")
        outputs = (layouts.Output * 1)(layouts.Output(want_float=1, is_prealloc=0, index=0))
        self._check(self._lib.fn("rknn_outputs_get")(self._ctx, 1, outputs, None), "rknn_outputs_get")
        try:
            # copied before the release, which frees the runtime's buffer
            data = ctypes.string_at(outputs[0].buf, outputs[0].size)
        finally:
            self._lib.fn("rknn_outputs_release")(self._ctx, 1, outputs)
        if len(data) != self.info.embedding_bytes:
            raise RuntimeFailure(f"the image encoder returned {len(data)} bytes, expected "
                                 f"{self.info.embedding_bytes}")
        return data

    def _check(self, ret: int, what: str) -> None:
        if ret != 0:
            raise RuntimeFailure(f"{what} failed: {layouts.error_name(ret)} ({ret})")

    def close(self) -> None:
        """rknn_destroy (idempotent): frees the context and its NPU memory."""
        if self._ctx.value:
            self._lib.fn("rknn_destroy")(self._ctx)
            self._ctx = layouts.Context(0)
