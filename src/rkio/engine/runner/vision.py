"""A vision model's image encoder inside its runner: images of a chat become rkllm multimodal input.

The encoder (librknnrt, ``rkio.runtime.rknn``) runs in the runner process like the LLM, so a crash in either
library costs this runner's request, not the server. Each image a conversation carries is preprocessed
(``rkio.runtime.images``), encoded once and remembered by the hash of its bytes: HTTP chats resend the whole
history every turn, so a multi-turn chat about one picture encodes it on the first turn only.

In the rendered prompt an ``<image>`` placeholder stands where each image's rows go (the rknn-llm
multimodal demo's convention), before the text of the message that brought it.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import replace
from typing import Any, Protocol

from rkio.engine.runner.messages import RunnerGeneration
from rkio.engine.types import ChatMessage, ModelSpec
from rkio.engine.vision_spec import IMAGE_PLACEHOLDER, VisionSpec
from rkio.errors import InvalidRequest, LoadFailed
from rkio.runtime.base import Feature, GenerateParams, LoadParams, MultimodalInput
from rkio.runtime.images import Preprocessing, preprocess

log = logging.getLogger("rkio.runner.vision")

CACHE_ENTRIES = 64  # ~77 MB of Qwen2-VL-2B embeddings (196 x 1536 floats each)


class Encoder(Protocol):
    """What the runner needs of an image encoder (``rkio.runtime.rknn.RknnEncoder``)."""

    def encode(self, tensor: bytes, tensor_type: int, channels_last: bool) -> bytes: ...
    def close(self) -> None: ...


class VisionEncoder:
    """The model's encoder, its preprocessing, and the embeddings of the images seen so far."""

    def __init__(self, spec: VisionSpec, encoder: Encoder, *, width: int, height: int, image_tokens: int,
                 embed_dim: int, input_type: int, channels_last: bool) -> None:
        self.spec = spec
        self._encoder = encoder
        self.image_tokens = image_tokens
        self.width, self.height = width, height
        self.embed_dim = embed_dim
        self.input_type = input_type
        self.channels_last = channels_last
        self._how = Preprocessing(width, height, as_float=spec.input == "float32", mean=spec.mean,
                                  std=spec.std, fit=spec.fit)
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self.encoded = 0  # images run through the encoder (the rest came from the cache)

    def embedding(self, image: bytes, what: str) -> bytes:
        key = hashlib.sha256(image).hexdigest()
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        tensor = preprocess(image, self._how, what=what)
        rows = self._encoder.encode(tensor.data, self.input_type, self.channels_last)
        self.encoded += 1
        self._cache[key] = rows
        while len(self._cache) > CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return rows

    def run_tensor(self, tensor: bytes, tensor_type: int, channels_last: bool) -> bytes:
        """The encoder's output for an input tensor the caller prepared (the IO API's rknn.run)."""
        self.encoded += 1
        return self._encoder.encode(tensor, tensor_type, channels_last)

    def close(self) -> None:
        self._cache.clear()
        self._encoder.close()


def open_encoder(spec: ModelSpec) -> VisionEncoder | None:
    """The encoder of a vision model (rknn_init in this process), or None for a text model."""
    vision = spec.vision
    if vision is None:
        return None
    if spec.runtime != "rkllm":
        raise LoadFailed(f"model {spec.name!r}: [vision] needs the rkllm runtime (an RKNN encoder)")
    from rkio.runtime import rknn
    from rkio.runtime.rknn import layouts

    encoder = rknn.RknnEncoder(rknn.load_library(), vision.encoder_path)
    info = encoder.info
    for key, declared, actual in (("image_tokens", vision.image_tokens, info.image_tokens),
                                  ("embed_dim", vision.embed_dim, info.embed_dim)):
        if declared is not None and declared != actual:
            encoder.close()
            raise LoadFailed(f"model {spec.name!r}: model.toml says vision.{key} = {declared}, the encoder "
                             f"{vision.encoder_path} yields {actual}")
    size = (vision.image_width, vision.image_height)
    if size != (None, None) and size != (info.width, info.height):
        encoder.close()
        raise LoadFailed(f"model {spec.name!r}: model.toml says vision.image_size = {list(size)}, "
                         f"the encoder takes {info.width}x{info.height}")
    input_type = layouts.TENSOR_FLOAT32 if vision.input == "float32" else layouts.TENSOR_UINT8
    log.info("image encoder %s: %dx%d -> %d x %d (librknnrt %s)", vision.encoder_path, info.width,
             info.height, info.image_tokens, info.embed_dim, info.api_version)
    # a uint8 image is fed NHWC (the demo's layout); normalised floats are planar NCHW
    return VisionEncoder(vision, encoder, width=info.width, height=info.height,
                         image_tokens=info.image_tokens, embed_dim=info.embed_dim, input_type=input_type,
                         channels_last=vision.input != "float32")


def load_params(spec: ModelSpec, params: LoadParams) -> LoadParams:
    """The LLM's load parameters with the model's image tags (used by rkllm before 1.3.0)."""
    vision = spec.vision
    if vision is None:
        return params
    return replace(params, img_start=vision.image_start, img_end=vision.image_end,
                   img_content=vision.image_content)


def with_placeholders(gen: RunnerGeneration, vision: VisionEncoder | None) -> RunnerGeneration:
    """``gen`` with an ``<image>`` placeholder per image before the text of its message (the user's own
    ``<image>`` text is removed, so placeholders and images always pair up). Checks the image count."""
    if vision is None or gen.messages is None:
        return gen
    total = sum(len(m.images) for m in gen.messages)
    if total == 0:
        return gen
    if total > vision.spec.max_images:
        raise InvalidRequest(f"the conversation carries {total} images; this model takes at most "
                             f"{vision.spec.max_images} (vision.max_images in its model.toml)")
    messages = tuple(_placed(m) for m in gen.messages)
    return replace(gen, messages=messages)


def _placed(message: ChatMessage) -> ChatMessage:
    if not message.images:
        return message
    text = message.content.replace(IMAGE_PLACEHOLDER, "")
    return replace(message, content=IMAGE_PLACEHOLDER * len(message.images) + text)


def to_multimodal(params: GenerateParams, gen: RunnerGeneration, vision: VisionEncoder | None,
                  features: frozenset[Feature]) -> GenerateParams:
    """The rendered ``params`` as multimodal input carrying the embeddings of the conversation's images."""
    if vision is not None and params.multimodal is not None and not params.multimodal.image_start:
        spec = vision.spec
        return replace(params, multimodal=replace(params.multimodal, image_start=spec.image_start,
                                                  image_end=spec.image_end, image_content=spec.image_content))
    if vision is None or gen.messages is None or params.prompt is None:
        return params
    images = [image for m in gen.messages for image in m.images]
    if not images:
        return params
    if Feature.MULTIMODAL_INPUT not in features:
        raise InvalidRequest("this runtime takes no multimodal input")
    rows = b"".join(vision.embedding(image, f"image {i + 1}") for i, image in enumerate(images))
    spec = vision.spec
    prompt, tokens, n_image = params.prompt, vision.image_tokens, len(images)
    if n_image > 1 and Feature.MULTIPLE_IMAGES not in features:
        # before 1.2.1b1 an input holds one image: the images go in as one, their rows back to back at the
        # first placeholder (the gateway reports "separate images" as not applied, rkio.engine.run_plan)
        at = prompt.find(IMAGE_PLACEHOLDER)
        if at >= 0:
            end = at + len(IMAGE_PLACEHOLDER)
            prompt = prompt[:end] + prompt[end:].replace(IMAGE_PLACEHOLDER, "")
        tokens, n_image = tokens * n_image, 1
    multimodal = MultimodalInput(prompt=prompt, image_embed=rows, n_image_tokens=tokens, n_image=n_image,
                                 image_width=vision.width, image_height=vision.height,
                                 image_start=spec.image_start,
                                 image_end=spec.image_end, image_content=spec.image_content)
    return replace(params, prompt=None, multimodal=multimodal)


# Runtime calls on the encoder (the IO API's image.process and rknn.* methods, ``Engine.runtime_call``)
OPS = frozenset({"encode_image", "rknn_query", "rknn_run"})


def perform(vision: VisionEncoder | None, op: str, args: dict[str, Any]) -> object:
    """Run encoder call ``op``: ``encode_image {image}`` (encoded image bytes, preprocessed here),
    ``rknn_query {}`` (the encoder's tensors), ``rknn_run {tensor, type, channels_last}`` (a preprocessed
    input tensor, as rknn_inputs_set takes it)."""
    if vision is None:
        raise InvalidRequest("this model has no image encoder (no [vision] table in its model.toml)")
    if op == "encode_image":
        image = args.get("image")
        if not isinstance(image, bytes):
            raise InvalidRequest("encode_image needs the image's bytes")
        return {"embedding": vision.embedding(image, "image"), "n_image_tokens": vision.image_tokens,
                "embed_dim": vision.embed_dim}
    if op == "rknn_query":
        return {"width": vision.width, "height": vision.height, "input_type": vision.input_type,
                "channels_last": vision.channels_last, "n_image_tokens": vision.image_tokens,
                "embed_dim": vision.embed_dim}
    if op == "rknn_run":
        tensor, kind, channels_last = args.get("tensor"), args.get("type"), args.get("channels_last")
        if not isinstance(tensor, bytes) or not isinstance(kind, int) or not isinstance(channels_last, bool):
            raise InvalidRequest("rknn_run needs tensor bytes, a tensor type and channels_last")
        return {"output": vision.run_tensor(tensor, kind, channels_last)}
    raise InvalidRequest(f"unknown encoder call {op!r}")
