"""Image preprocessing for a vision encoder: decode any format Pillow reads, square it, scale it to the
encoder's input size, and lay the pixels out as the encoder's input tensor.

The rknn-llm multimodal demo pads the image to a square with a neutral background before resizing (so the
aspect ratio survives) and feeds uint8 RGB in NHWC, the mean/std normalisation being part of the converted
model; an encoder converted without it takes float32 input, normalised here with the model's mean and std
and laid out NCHW. Sizes are bounded before decoding (bytes) and while decoding (pixels; Pillow's
decompression-bomb check), so a hostile file costs a clear InvalidRequest, not the runner's memory.
"""

from __future__ import annotations

import io
import warnings
from array import array
from dataclasses import dataclass
from typing import Literal

from rkio.errors import InvalidRequest, PayloadTooLarge

MAX_IMAGE_BYTES = 20 << 20
MAX_IMAGE_PIXELS = 50_000_000
PAD_COLOUR = (127, 127, 127)

Fit = Literal["pad", "stretch"]


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """How one encoder wants its input (from model.toml and the encoder's queried input attributes)."""

    width: int
    height: int
    as_float: bool = False  # float32 normalised NCHW, else uint8 NHWC
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in 0..1 units, for as_float
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    fit: Fit = "pad"


@dataclass(frozen=True, slots=True)
class ImageTensor:
    data: bytes
    source_width: int
    source_height: int


def preprocess(data: bytes, how: Preprocessing, *, what: str = "image") -> ImageTensor:
    """The encoder input for the encoded image ``data``; ``what`` names it in errors."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise PayloadTooLarge(f"{what} is {len(data)} bytes; at most {MAX_IMAGE_BYTES} are accepted")
    if not data:
        raise InvalidRequest(f"{what} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS
            try:
                with Image.open(io.BytesIO(data)) as opened:
                    opened.seek(0)  # animated formats: the first frame
                    image = ImageOps.exif_transpose(opened).convert("RGB")
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"{what} has too many pixels (at most {MAX_IMAGE_PIXELS})") from exc
    except UnidentifiedImageError as exc:
        raise InvalidRequest(f"{what} is not an image in a format rkio can read") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidRequest(f"{what} cannot be decoded: {exc}") from exc
    width, height = image.size
    if how.fit == "pad" and width != height:
        side = max(width, height)
        square = Image.new("RGB", (side, side), PAD_COLOUR)
        square.paste(image, ((side - width) // 2, (side - height) // 2))
        image = square
    image = image.resize((how.width, how.height), Image.Resampling.BICUBIC)
    if not how.as_float:
        return ImageTensor(image.tobytes(), width, height)
    planes = []
    for channel, band in enumerate(image.split()):
        scale = 1.0 / (255.0 * how.std[channel])
        offset = -how.mean[channel] / how.std[channel]
        plane = band.convert("F").point(lambda v, s=scale, o=offset: v * s + o)
        planes.append(plane.tobytes())  # native float32, row-major: one NCHW plane
    floats = array("f")
    for plane_bytes in planes:
        floats.frombytes(plane_bytes)
    return ImageTensor(floats.tobytes(), width, height)
