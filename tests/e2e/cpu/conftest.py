"""A live ``rkio serve`` on the CPU with the real default model, for end-to-end tests with real clients."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cpu_server import MODEL, REPO, Server, free_port, stop, wait_healthy


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """build/models with the default model; skips when the CPU runtime or the model's package is missing."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install 'rkio[cpu]'")
    from rkio.models.default import ModelPackageMissing, install_default_model

    root = Path(os.environ.get("RKIO_TEST_MODELS_DIR", REPO / "build" / "models"))
    try:
        install_default_model(root)
    except ModelPackageMissing as exc:
        pytest.skip(exc.message)
    return root


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("rkio-home")
    port = free_port()
    env = {**os.environ, "RKIO_HOME": str(home), "RKIO_MODELS_DIR": str(models_dir),
           "RKIO_STATE_DIR": str(home / "state"), "RKIO_HOST": "127.0.0.1", "RKIO_PORT": str(port),
           "RKIO_RUNTIME": "llamacpp", "RKIO_DEFAULT_MODEL": MODEL,
           "RKIO_NPU_LOCK": str(home / "npu.lock")}  # never collides with another test's server
    env.pop("RKIO_API_KEY", None)
    log = (home / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "rkio", "serve"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, 60)
        yield Server(url, port, env)
    finally:
        stop(proc)
        log.close()
