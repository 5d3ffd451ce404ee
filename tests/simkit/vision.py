"""Simulated vision models for engine and API tests: a folder with the .rkllm LLM, the .rknn encoder and
model.toml, plus small test images (``png``) that Pillow writes."""

from __future__ import annotations

import io
from pathlib import Path

from simkit.library import MiB, make_model, sim_library

ENCODER_SIZE = 32  # encoder input side, pixels
IMAGE_TOKENS = 4
EMBED_DIM = 16


def sim_rknn_library() -> Path:
    """The simulated librknnrt.so built beside the rkllm flavours (``make -C sim``)."""
    path = sim_library("1.2.3").parent.parent / "rknn" / "librknnrt.so"
    assert path.is_file(), f"{path} missing: make -C sim OUT=..."
    return path


def add_vision_model(root: Path, name: str, *, llm_bytes: int = 64 * MiB, encoder_bytes: int = 0,
                     npu_bytes: int | None = None, fault: str = "", toml_extra: str = "") -> Path:
    """``root/name/`` with ``name.rkllm`` (hidden size EMBED_DIM), ``vision.rknn`` and model.toml."""
    folder = root / name
    make_model(folder / f"{name}.rkllm", llm_bytes, embd_size=EMBED_DIM)
    header = f"RKSIM\nimage_size={ENCODER_SIZE}\nimage_tokens={IMAGE_TOKENS}\nembed_dim={EMBED_DIM}\n"
    if npu_bytes is not None:
        header += f"npu_bytes={npu_bytes}\n"
    if fault:
        header += f"fault={fault}\n"
    encoder = folder / "vision.rknn"
    with open(encoder, "wb") as f:
        f.write((header + "\n").encode())
        f.truncate(max(encoder_bytes, len(header) + 1))
    (folder / "model.toml").write_text(
        "[vision]\n"
        f"image_tokens = {IMAGE_TOKENS}\nembed_dim = {EMBED_DIM}\n"
        'image_start = "<|vision_start|>"\nimage_end = "<|vision_end|>"\nimage_content = "<|image_pad|>"\n'
        + toml_extra)
    return folder


def png(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30), fmt: str = "PNG") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()
