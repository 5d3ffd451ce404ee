"""The runner's vision hooks: placeholders per image, multimodal input, one encoding per distinct image."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from rkio.engine.runner import vision
from rkio.engine.runner.messages import RunnerGeneration
from rkio.engine.types import ChatMessage
from rkio.engine.vision_spec import VisionSpec
from rkio.errors import InvalidRequest
from rkio.runtime.base import Feature, GenerateParams


class CountingEncoder:
    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self.closed = False

    def encode(self, tensor: bytes, tensor_type: int, channels_last: bool) -> bytes:
        self.calls.append(tensor)
        return bytes([len(self.calls)]) * 8  # 2 tokens x 1 float

    def close(self) -> None:
        self.closed = True


def picture(value: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (6, 6), (value, value, value)).save(out, "PNG")
    return out.getvalue()


def make(max_images: int = 4) -> tuple[vision.VisionEncoder, CountingEncoder]:
    fake = CountingEncoder()
    spec = VisionSpec("/m/v.rknn", 1, max_images=max_images, image_start="<s>", image_end="</s>")
    return vision.VisionEncoder(spec, fake, width=4, height=4, image_tokens=2, embed_dim=1, input_type=3,
                                channels_last=True), fake


def test_each_image_gets_a_placeholder_before_its_message_text() -> None:
    enc, _ = make()
    gen = RunnerGeneration(GenerateParams(), messages=(
        ChatMessage("user", "a <image> b", images=(picture(1), picture(2))), ChatMessage("assistant", "ok")))
    placed = vision.with_placeholders(gen, enc)
    assert placed.messages is not None
    assert placed.messages[0].content == "<image><image>a  b" and placed.messages[1].content == "ok"


def test_too_many_images_are_refused() -> None:
    enc, _ = make(max_images=1)
    gen = RunnerGeneration(GenerateParams(), messages=(ChatMessage("user", "x", images=(b"1", b"2")),))
    with pytest.raises(InvalidRequest, match="at most 1"):
        vision.with_placeholders(gen, enc)


def test_a_conversation_about_one_picture_encodes_it_once() -> None:
    enc, fake = make()
    red, blue = picture(10), picture(200)
    turns = [(ChatMessage("user", "what", images=(red,)),),
             (ChatMessage("user", "what", images=(red,)), ChatMessage("assistant", "a"),
              ChatMessage("user", "and this", images=(blue,)))]
    inputs = []
    for messages in turns:
        gen = RunnerGeneration(GenerateParams(), messages=messages)
        params = vision.to_multimodal(GenerateParams(prompt="<image> p"), gen, enc,
                                      frozenset({Feature.MULTIMODAL_INPUT, Feature.MULTIPLE_IMAGES}))
        assert params.prompt is None and params.multimodal is not None
        inputs.append(params.multimodal)
    assert len(fake.calls) == 2 and enc.encoded == 2  # red once, blue once
    assert inputs[1].n_image == 2 and inputs[1].image_embed[:8] == inputs[0].image_embed
    assert (inputs[1].image_start, inputs[1].image_end, inputs[1].n_image_tokens) == ("<s>", "</s>", 2)


def test_text_only_requests_stay_prompts() -> None:
    enc, fake = make()
    gen = RunnerGeneration(GenerateParams(), messages=(ChatMessage("user", "hi"),))
    features = frozenset({Feature.MULTIMODAL_INPUT})
    params = vision.to_multimodal(GenerateParams(prompt="hi"), gen, enc, features)
    assert params.prompt == "hi" and not fake.calls


def test_before_1_2_1b1_several_images_go_in_as_one() -> None:
    enc, _ = make()
    gen = RunnerGeneration(GenerateParams(), messages=(
        ChatMessage("user", "two", images=(picture(1), picture(2))),))
    params = vision.to_multimodal(GenerateParams(prompt="<image><image>two"), gen, enc,
                                  frozenset({Feature.MULTIMODAL_INPUT}))
    assert params.multimodal is not None
    assert (params.multimodal.prompt, params.multimodal.n_image, params.multimodal.n_image_tokens) == (
        "<image>two", 1, 4)
    assert len(params.multimodal.image_embed) == 16  # both images' rows
