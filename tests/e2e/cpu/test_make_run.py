"""`make run` (scripts/run.sh) on a machine without the NPU runtime reaches a serving state on its own."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest
from cpu_server import MODEL, REPO, free_port, stop, wait_healthy

pytestmark = pytest.mark.model


def test_run_script_installs_the_default_model_and_serves_it(models_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RKIO_")}
    # a missing explicit library path never falls back to a search: the CPU path even on a board
    env.update({"RKIO_HOME": str(tmp_path / "home"), "RKIO_PORT": str(port),
                "RKIO_NPU_LOCK": str(tmp_path / "npu.lock"),
                "RKIO_RKLLM_LIB": str(tmp_path / "none")})
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen([str(REPO / "scripts" / "run.sh")], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, 180)  # includes assembling the model into the fresh RKIO_HOME
        tags = httpx.get(f"{url}/api/tags", timeout=10).json()
        assert MODEL in [m["name"].split(":")[0] for m in tags["models"]]
        reply = httpx.post(f"{url}/api/chat", timeout=120, json={
            "model": MODEL, "stream": False, "options": {"temperature": 0},
            "messages": [{"role": "user", "content": "Say hi."}]}).json()
        assert reply["message"]["content"].strip() and reply["done_reason"] == "stop"
    finally:
        stop(proc)
        log.close()
    assert (tmp_path / "home" / "models" / MODEL / "model.gguf").is_file()
    output = (tmp_path / "run.log").read_text()
    assert "runtime llamacpp" in output
