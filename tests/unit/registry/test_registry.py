"""The models directory: discovery, name validation and containment, model.toml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rkio.engine.registry import ModelConfigError, ModelRegistry
from rkio.errors import ModelNotFound
from rkio.runtime.base import Sampling


def sparse(path: Path, size: int = 1 << 30) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    sparse(root / "qwen2.5-1.5b" / "Qwen2.5-1.5B-w8a8.rkllm", 3 << 30)
    sparse(root / "tiny.gguf", 1000)
    sparse(root / "solo.rkllm", 5000)
    (root / "not-a-model").mkdir()
    (root / "README.txt").write_text("hi")
    return root


def test_list_finds_directories_and_single_files_with_runtime_by_extension(models: Path) -> None:
    specs = ModelRegistry(models).list()
    assert [(s.name, s.runtime) for s in specs] == [
        ("qwen2.5-1.5b", "rkllm"), ("solo", "rkllm"), ("tiny", "llamacpp")]
    qwen = specs[0]
    assert qwen.path == str((models / "qwen2.5-1.5b" / "Qwen2.5-1.5B-w8a8.rkllm").resolve())
    assert qwen.size_bytes == 3 << 30  # sparse: apparent size
    assert qwen.load.model_path == qwen.path
    assert qwen.load.max_context_len == 4096 and qwen.pinned is False and qwen.keep_alive is None


def test_missing_models_dir_lists_nothing(tmp_path: Path) -> None:
    assert ModelRegistry(tmp_path / "absent").list() == []


def test_new_and_removed_models_are_seen_without_restart(models: Path) -> None:
    registry = ModelRegistry(models)
    assert "late" not in [s.name for s in registry.list()]
    sparse(models / "late" / "late.gguf", 10)
    assert registry.get("late").runtime == "llamacpp"
    os.unlink(models / "tiny.gguf")
    with pytest.raises(ModelNotFound):
        registry.get("tiny")


def test_changed_model_toml_is_reparsed(models: Path) -> None:
    registry = ModelRegistry(models)
    toml = models / "qwen2.5-1.5b" / "model.toml"
    toml.write_text("max_context_len = 2048\n")
    assert registry.get("qwen2.5-1.5b").load.max_context_len == 2048
    toml.write_text("max_context_len = 8192\n# longer file, so the size differs\n")
    assert registry.get("qwen2.5-1.5b").load.max_context_len == 8192


def test_latest_tag_finds_the_plain_name(models: Path) -> None:
    assert ModelRegistry(models).get("solo:latest").name == "solo"


@pytest.mark.parametrize(
    "name",
    ["../x", "..", "a/../solo", "/etc/passwd", "/", "", ".hidden", "-x", "a/b", "solo/..", "x" * 129,
     "q\x00", "solo ", "~root", "a..b"],
)
def test_invalid_names_are_not_found(models: Path, name: str) -> None:
    with pytest.raises(ModelNotFound, match="invalid model name"):
        ModelRegistry(models).get(name)


def test_unknown_name_says_where_it_looked(models: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"model 'nope' not found in .*models"):
        ModelRegistry(models).get("nope")
    with pytest.raises(ModelNotFound):
        ModelRegistry(models).get("not-a-model")


def test_symlink_escaping_the_models_dir_is_rejected(models: Path, tmp_path: Path) -> None:
    outside = sparse(tmp_path / "elsewhere" / "evil.rkllm", 10)
    os.symlink(outside, models / "evil.rkllm")
    os.symlink(outside.parent, models / "evil-dir")
    registry = ModelRegistry(models)
    for name in ("evil", "evil-dir"):
        with pytest.raises(ModelNotFound, match="outside the models directory"):
            registry.get(name)
    assert {"evil", "evil-dir"}.isdisjoint(s.name for s in registry.list())


def test_symlink_inside_the_models_dir_is_fine(models: Path) -> None:
    os.symlink(models / "solo.rkllm", models / "alias.rkllm")
    assert ModelRegistry(models).get("alias").path == str((models / "solo.rkllm").resolve())


def test_directory_with_two_model_files_is_refused(models: Path) -> None:
    sparse(models / "qwen2.5-1.5b" / "other.gguf", 10)
    with pytest.raises(ModelNotFound, match="several model files"):
        ModelRegistry(models).get("qwen2.5-1.5b")


def test_full_model_toml_is_applied(models: Path) -> None:
    folder = models / "qwen2.5-1.5b"
    sparse(folder / "style.rkllm.lora", 10)
    (folder / "model.toml").write_text(
        """
max_context_len = 8192
max_new_tokens = 512
temperature = 0.2
system_prompt = "You are terse."
chat_template = "llama3"
keep_alive = "10m"
pinned = true
base_domain_id = 1
abi = "1.2.1"
n_keep = 64
embed_flash = false
cpus = "4-7"
n_batch = 2

[sampling]
top_k = 1
seed = 42

[[lora]]
name = "style"
path = "style.rkllm.lora"
scale = 0.5
"""
    )
    spec = ModelRegistry(models).get("qwen2.5-1.5b")
    assert spec.load.max_context_len == 8192 and spec.load.max_new_tokens == 512
    assert spec.load.sampling == Sampling(temperature=0.2, top_k=1, seed=42)
    assert (spec.system_prompt, spec.chat_template, spec.abi) == ("You are terse.", "llama3", "1.2.1")
    assert spec.keep_alive == 600.0 and spec.pinned
    assert spec.base_domain_id == 1 and spec.load.base_domain_id == 1
    assert (spec.load.n_keep, spec.load.embed_flash, spec.load.n_batch) == (64, False, 2)
    assert spec.load.enabled_cpus_mask == 0xF0
    assert spec.lora_adapters == (("style", str((folder / "style.rkllm.lora").resolve()), 0.5),)


@pytest.mark.parametrize("toml", ['sampling = "reinit"\ntemperature = 0.4',
                                  '[sampling]\npolicy = "reinit"\ntemperature = 0.4'])
def test_sampling_reinit_policy_beside_the_sampling_values(models: Path, toml: str) -> None:
    (models / "qwen2.5-1.5b" / "model.toml").write_text(toml)
    spec = ModelRegistry(models).get("qwen2.5-1.5b")
    assert spec.sampling_policy == "reinit" and spec.load.sampling == Sampling(temperature=0.4)
    assert ModelRegistry(models).get("solo").sampling_policy == "loaded"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("max_context_len = 'big'", "max_context_len: expected an integer"),
        ("max_context_len = 0", "max_context_len: must be between 1"),
        ("temperature = 'hot'", "temperature: expected a number"),
        ("top_p = 1.5", "top_p: must be between 0 and 1"),
        ("pinned = 'yes'", "pinned: expected true or false"),
        ("keep_alive = 'soon'", "keep_alive: not a duration"),
        ("base_domain_id = 16", "base_domain_id: must be between 0 and 15"),
        ("cpus = 'four'", "cpus: expected CPU numbers"),
        ("cpus = [4, 99]", "cpus: expected CPU numbers 0-63"),
        ("colour = 'blue'", "colour: unknown key"),
        ("temperature = 0.5\n[sampling]\ntemperature = 0.1", "temperature: given both"),
        ("max_context_len = = 3", "not valid TOML"),
        ("[[lora]]\nname = 'x'\npath = '../../etc/passwd'", r"lora\[0\].path: .* is outside the models"),
        ("[[lora]]\nname = 'x'\npath = 'missing.lora'", r"lora\[0\].path: .* does not exist"),
        ("[[lora]]\npath = 'x'", r"lora\[0\].name: expected"),
        ("lora = 3", "lora: expected"),
        ("sampling = 'sometimes'", "sampling: expected \"loaded\" or \"reinit\""),
        ("sampling = 3", "sampling: expected a table"),
    ],
)
def test_bad_model_toml_names_file_and_key(models: Path, toml: str, message: str) -> None:
    config = models / "qwen2.5-1.5b" / "model.toml"
    config.write_text(toml)
    registry = ModelRegistry(models)
    with pytest.raises(ModelConfigError, match=message) as caught:
        registry.get("qwen2.5-1.5b")
    assert str(config) in caught.value.message
    assert caught.value.status == 503
    # the broken model is left out of the listing; the others still show
    assert [s.name for s in registry.list()] == ["solo", "tiny"]


def test_runtime_restriction_hides_other_kinds_and_explains(models: Path) -> None:
    registry = ModelRegistry(models, runtimes=("llamacpp",))
    assert {s.runtime for s in registry.list()} == {"llamacpp"}
    rkllm_name = next(s.name for s in ModelRegistry(models).list() if s.runtime == "rkllm")
    with pytest.raises(ModelNotFound, match=r"needs the rkllm runtime.*--runtime llamacpp"):
        registry.get(rkllm_name)


def test_lora_adapters_are_served_as_model_variants(models: Path) -> None:
    folder = models / "qwen2.5-1.5b"
    sparse(folder / "style.rkllm.lora", 10)
    (folder / "model.toml").write_text('[[lora]]\nname = "style"\npath = "style.rkllm.lora"\n')
    registry = ModelRegistry(models)
    ids = [id_ for id_, _ in registry.variants()]
    assert ids.index("qwen2.5-1.5b:style") == ids.index("qwen2.5-1.5b") + 1
    spec, adapter = registry.resolve("qwen2.5-1.5b:style")
    assert (spec.name, adapter) == ("qwen2.5-1.5b", "style")
    assert registry.get("qwen2.5-1.5b:style") == spec == registry.resolve("qwen2.5-1.5b")[0]
    with pytest.raises(ModelNotFound):
        registry.resolve("qwen2.5-1.5b:nope")
