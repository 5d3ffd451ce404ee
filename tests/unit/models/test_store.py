"""ModelStore: create / copy / delete / place stay inside the models directory and are atomic."""

from __future__ import annotations

from pathlib import Path

import pytest

from rkio.engine.registry import ModelRegistry
from rkio.errors import InvalidRequest, ModelNotFound
from rkio.models.modelfile import ModelDefinition
from rkio.models.store import ModelExists, ModelStore


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    (root / "base").mkdir(parents=True)
    (root / "base" / "base.gguf").write_bytes(b"GGUF base")
    (root / "base" / "style.bin").write_bytes(b"lora")
    (root / "base" / "model.toml").write_text(
        'max_context_len = 256\n[[lora]]\nname = "style"\npath = "style.bin"\nscale = 0.5\n')
    (root / "single.gguf").write_bytes(b"GGUF single")
    (tmp_path / "outside.gguf").write_bytes(b"GGUF outside")
    return root


def test_copy_links_the_file_and_carries_settings_and_adapters(models: Path) -> None:
    ModelStore(models).copy("base", "twin")
    spec = ModelRegistry(models).get("twin")
    assert spec.load.max_context_len == 256
    assert (models / "twin" / "base.gguf").stat().st_ino == (models / "base" / "base.gguf").stat().st_ino
    assert [(n, Path(p).read_bytes(), s) for n, p, s in spec.lora_adapters] == [("style", b"lora", 0.5)]
    assert Path(spec.lora_adapters[0][1]).parent == (models / "twin").resolve()  # its own copy


def test_create_from_a_path_inside_and_refusals(models: Path, tmp_path: Path) -> None:
    store = ModelStore(models)
    store.create("fromfile", ModelDefinition(source="single.gguf", parameters={"top_k": 3}))
    assert ModelRegistry(models).get("fromfile").load.sampling.top_k == 3
    for source in (str(tmp_path / "outside.gguf"), "../outside.gguf", "base/model.toml"):
        with pytest.raises(InvalidRequest):
            store.create("nope", ModelDefinition(source=source))
    with pytest.raises(ModelExists):
        store.create("base", ModelDefinition(source="single.gguf"))
    with pytest.raises(InvalidRequest, match="max_context_len"):
        store.create("nope", ModelDefinition(source="single.gguf", parameters={"max_context_len": 0}))
    assert sorted(p.name for p in models.iterdir()) == ["base", "fromfile", "single.gguf"]  # no leftovers


def test_delete_folder_and_single_file_models(models: Path, tmp_path: Path) -> None:
    store = ModelStore(models)
    store.delete("base")
    store.delete("single:latest")
    assert list(models.iterdir()) == [] and (tmp_path / "outside.gguf").exists()
    with pytest.raises(ModelNotFound):
        store.delete("base")
    with pytest.raises(InvalidRequest):
        store.delete("../models")


def test_delete_a_symlinked_model_removes_the_link_only(models: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.gguf").write_bytes(b"GGUF")
    (models / "linked").symlink_to(elsewhere)
    ModelStore(models).delete("linked")
    assert not (models / "linked").exists() and (elsewhere / "keep.gguf").exists()
