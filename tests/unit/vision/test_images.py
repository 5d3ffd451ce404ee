"""Image preprocessing: any Pillow format, padded to a square, resized, as uint8 NHWC or float32 NCHW."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image

from rkio.errors import InvalidRequest, PayloadTooLarge
from rkio.runtime import images
from rkio.runtime.images import Preprocessing, preprocess


def encoded(colour: tuple[int, int, int], size: tuple[int, int], fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
def test_every_common_format_becomes_the_encoder_size(fmt: str) -> None:
    tensor = preprocess(encoded((200, 10, 10), (20, 20), fmt), Preprocessing(8, 8))
    assert len(tensor.data) == 8 * 8 * 3 and (tensor.source_width, tensor.source_height) == (20, 20)
    centre = (4 * 8 + 4) * 3
    red = tensor.data[centre]
    assert red > 150  # still red after the format's own compression


def test_a_wide_image_is_padded_not_stretched() -> None:
    tensor = preprocess(encoded((255, 0, 0), (40, 10), "PNG"), Preprocessing(8, 8))
    top_left, middle = tensor.data[0:3], tensor.data[(4 * 8) * 3:(4 * 8) * 3 + 3]
    assert top_left == bytes(images.PAD_COLOUR)
    assert middle[0] > 230 and middle[1] < 20  # the picture's red band, resampled
    stretched = preprocess(encoded((255, 0, 0), (40, 10), "PNG"), Preprocessing(8, 8, fit="stretch"))
    assert stretched.data[0:3] == b"\xff\x00\x00"


def test_float_input_is_normalised_and_planar() -> None:
    how = Preprocessing(4, 4, as_float=True, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    tensor = preprocess(encoded((255, 0, 128), (4, 4), "PNG"), how)
    floats = struct.unpack(f"{4 * 4 * 3}f", tensor.data)
    red, green, blue = floats[0], floats[16], floats[32]  # one value per plane: NCHW
    assert red == pytest.approx(1.0) and green == pytest.approx(-2.0)
    assert blue == pytest.approx(0.0039, abs=1e-3)


@pytest.mark.parametrize("data", [b"not an image", b"\x89PNG\r\n\x1a\n broken", b""])
def test_a_non_image_is_an_invalid_request(data: bytes) -> None:
    with pytest.raises(InvalidRequest, match="image 2"):
        preprocess(data, Preprocessing(8, 8), what="image 2")


def test_size_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 100)
    with pytest.raises(PayloadTooLarge):
        preprocess(b"x" * 101, Preprocessing(8, 8))
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 20 << 20)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(PayloadTooLarge, match="too many pixels"):
        preprocess(encoded((1, 1, 1), (300, 300), "PNG"), Preprocessing(8, 8))
