"""model.toml [vision]: the encoder file inside the model folder, validated keys, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from rkio.engine.registry import ModelConfigError, ModelRegistry
from rkio.engine.vision_spec import DEFAULT_ACTIVATION_BYTES


def folder(root: Path, toml: str, encoders: tuple[str, ...] = ("vision.rknn",)) -> Path:
    model = root / "vl"
    model.mkdir(parents=True)
    (model / "vl.rkllm").write_bytes(b"x" * 100)
    for name in encoders:
        (model / name).write_bytes(b"y" * 50)
    (model / "model.toml").write_text(toml)
    return model


def test_the_only_rknn_file_is_the_encoder_and_defaults_apply(tmp_path: Path) -> None:
    folder(tmp_path, "[vision]\nimage_tokens = 196\n")
    spec = ModelRegistry(tmp_path).get("vl")
    assert spec.vision is not None
    assert spec.vision.encoder_path == str((tmp_path / "vl" / "vision.rknn").resolve())
    assert spec.vision.encoder_bytes == 50 + DEFAULT_ACTIVATION_BYTES
    assert (spec.vision.image_tokens, spec.vision.max_images, spec.vision.input) == (196, 4, "uint8")


def test_a_text_model_has_no_vision(tmp_path: Path) -> None:
    folder(tmp_path, "max_context_len = 1024\n")
    assert ModelRegistry(tmp_path).get("vl").vision is None


@pytest.mark.parametrize(("toml", "message"), [
    ("[vision]\nencoder = \"../../etc/passwd\"\n", "outside the models directory"),
    ("[vision]\nencoder = \"missing.rknn\"\n", "does not exist"),
    ("[vision]\nimage_tokens = 0\n", "vision.image_tokens"),
    ("[vision]\ninput = \"int4\"\n", "vision.input"),
    ("[vision]\nstd = [1, 0, 1]\n", "vision.std"),
    ("[vision]\nmean = [1, 2]\n", "vision.mean"),
    ("[vision]\ncolour = 1\n", "vision.colour: unknown key"),
    ("vision = 3\n", "expected a [vision] table"),
])
def test_bad_vision_tables_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    folder(tmp_path, toml)
    with pytest.raises(ModelConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ModelRegistry(tmp_path).get("vl")


def test_several_encoders_must_be_named(tmp_path: Path) -> None:
    folder(tmp_path, "[vision]\n", encoders=("a.rknn", "b.rknn"))
    with pytest.raises(ModelConfigError, match=r"2 \.rknn files"):
        ModelRegistry(tmp_path).get("vl")
    (tmp_path / "vl" / "model.toml").write_text("[vision]\nencoder = \"b.rknn\"\nimage_size = [448, 336]\n")
    spec = ModelRegistry(tmp_path).get("vl")
    assert spec.vision is not None and spec.vision.encoder_path.endswith("b.rknn")
    assert (spec.vision.image_width, spec.vision.image_height) == (448, 336)
