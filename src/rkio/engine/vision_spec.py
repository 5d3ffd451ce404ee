"""A vision model's ``[vision]`` table in model.toml: its RKNN image encoder and how images reach the LLM.

Layout of a vision model folder: the ``.rkllm`` LLM, the ``.rknn`` encoder and model.toml::

    [vision]
    encoder = "vision.rknn"          # default: the folder's only .rknn file
    image_tokens = 196               # rows per image; default: what the encoder reports
    embed_dim = 1536                 # width of a row (the LLM's hidden size); default: the encoder's
    image_size = 392                 # or [width, height]; default: the encoder's input size
    image_start = "<|vision_start|>" # the model's image tags (rkllm 1.3.0 takes them per run, older
    image_end = "<|vision_end|>"     #   runtimes in RKLLMParam at load)
    image_content = "<|image_pad|>"
    max_images = 4                   # images one request may carry
    input = "uint8"                  # or "float32": normalise here with mean/std (0..1 units)
    fit = "pad"                      # or "stretch"
    encoder_bytes = 1427746880       # NPU memory the encoder takes; default: file size + 64 MiB
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

DEFAULT_ACTIVATION_BYTES = 64 << 20  # #195: the 1.34 GB encoder's allocation was ~6% over its file size
DEFAULT_MAX_IMAGES = 4
IMAGE_PLACEHOLDER = "<image>"  # where an image's rows go in a multimodal prompt (rknn-llm multimodal demo)


@dataclass(frozen=True, slots=True)
class VisionSpec:
    encoder_path: str
    encoder_bytes: int
    image_tokens: int | None = None
    embed_dim: int | None = None
    image_width: int | None = None
    image_height: int | None = None
    image_start: str = ""
    image_end: str = ""
    image_content: str = ""
    max_images: int = DEFAULT_MAX_IMAGES
    input: Literal["uint8", "float32"] = "uint8"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    fit: Literal["pad", "stretch"] = "pad"


KEYS = ("encoder", "image_tokens", "embed_dim", "image_size", "image_start", "image_end", "image_content",
        "max_images", "input", "mean", "std", "fit", "encoder_bytes")


def _positive(value: Any, key: str, high: int = 1 << 20) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f"{key}: expected an integer between 1 and {high}, got {value!r}")
    return value


def _triple(value: Any, key: str) -> tuple[float, float, float]:
    if (not isinstance(value, list) or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)):
        raise ValueError(f"{key}: expected three numbers (R, G, B), got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def _encoder_path(value: Any, folder: Path, models_dir: Path) -> Path:
    if value is None:
        found = sorted(p for p in folder.glob("*.rknn") if p.is_file())
        if len(found) != 1:
            raise ValueError(f"encoder: {folder} holds {len(found)} .rknn files; name the encoder")
        value = found[0].name
    if not isinstance(value, str) or not value:
        raise ValueError(f"encoder: expected a file name, got {value!r}")
    path = (folder / value).resolve()
    if not path.is_relative_to(models_dir.resolve()):
        raise ValueError(f"encoder: {value} is outside the models directory")
    if not path.is_file():
        raise ValueError(f"encoder: {path} does not exist")
    return path


def parse_vision(table: Any, folder: Path, models_dir: Path) -> VisionSpec:
    """A VisionSpec from the ``[vision]`` table; ValueError names the key."""
    if not isinstance(table, dict):
        raise ValueError("expected a [vision] table")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown key (known: {', '.join(KEYS)})")
    path = _encoder_path(table.get("encoder"), folder, models_dir)
    values: dict[str, Any] = {}
    for key in ("image_tokens", "embed_dim"):
        if key in table:
            values[key] = _positive(table[key], key)
    if "max_images" in table:
        values["max_images"] = _positive(table["max_images"], "max_images", 64)
    if "image_size" in table:
        size = table["image_size"]
        pair = size if isinstance(size, list) else [size, size]
        if len(pair) != 2:
            raise ValueError(f"image_size: expected a side or [width, height], got {size!r}")
        values["image_width"] = _positive(pair[0], "image_size", 8192)
        values["image_height"] = _positive(pair[1], "image_size", 8192)
    for key in ("image_start", "image_end", "image_content"):
        if key in table:
            if not isinstance(table[key], str):
                raise ValueError(f"{key}: expected a string, got {table[key]!r}")
            values[key] = table[key]
    for key, choices in (("input", ("uint8", "float32")), ("fit", ("pad", "stretch"))):
        if key in table:
            if table[key] not in choices:
                raise ValueError(f"{key}: expected one of {', '.join(choices)}, got {table[key]!r}")
            values[key] = table[key]
    for key in ("mean", "std"):
        if key in table:
            values[key] = _triple(table[key], key)
    if any(v == 0 for v in values.get("std", (1.0,))):
        raise ValueError("std: must not be 0")
    encoder_bytes = (_positive(table["encoder_bytes"], "encoder_bytes", 1 << 40) if "encoder_bytes" in table
                     else path.stat().st_size + DEFAULT_ACTIVATION_BYTES)
    return VisionSpec(encoder_path=str(path), encoder_bytes=encoder_bytes, **values)
