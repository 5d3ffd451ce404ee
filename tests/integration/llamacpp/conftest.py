"""The real packaged models for CPU-runtime tests, installed once into build/models: the default chat model
(SmolLM2 135M Instruct) for everything a chat does, and Gemma 3 270M (a base model) for raw completion."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rkio.models.catalog import DEFAULT, GEMMA3, PackagedModel
from rkio.runtime.base import LoadParams, Sampling
from rkio.runtime.llamacpp import LlamaCppRuntime

REPO = Path(__file__).resolve().parents[3]


def installed(model: PackagedModel) -> Path:
    """Path of ``model``'s GGUF; skips (with the install command) when llama.cpp or its package is missing."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'rkio[cpu]'")
    from rkio.models.default import ModelPackageMissing, install_model

    models_dir = Path(os.environ.get("RKIO_TEST_MODELS_DIR", REPO / "build" / "models"))
    try:
        return install_model(model, models_dir).path
    except ModelPackageMissing as exc:
        pytest.skip(exc.message)


def load(path: Path, **params: object) -> Iterator[LlamaCppRuntime]:
    runtime = LlamaCppRuntime()
    # one thread: the test machine's cores are shared, and llama.cpp threads spin-wait on each other
    defaults = {"max_context_len": 1024, "max_new_tokens": 256, "n_threads": 1,
                "sampling": Sampling(temperature=0.0, repeat_penalty=1.0)}
    runtime.load(LoadParams(model_path=str(path), **{**defaults, **params}))  # type: ignore[arg-type]
    yield runtime
    runtime.destroy()


@pytest.fixture(scope="session")
def model_path() -> Path:
    return installed(DEFAULT)


@pytest.fixture(scope="module")
def model(model_path: Path) -> Iterator[LlamaCppRuntime]:
    """The default model, greedy."""
    yield from load(model_path)


@pytest.fixture(scope="module")
def endless(model_path: Path) -> Iterator[LlamaCppRuntime]:
    """Ignores end of turn and has a small context: generations run until aborted or the context is full."""
    yield from load(model_path, max_context_len=128, max_new_tokens=10_000, ignore_eos_token=True)


@pytest.fixture(scope="module")
def gemma() -> Iterator[LlamaCppRuntime]:
    yield from load(installed(GEMMA3))
