"""The wheel a user installs on a board: built from the repository, installed into a fresh venv outside
it, it serves a model with no source tree, no simulator helpers and no test extras, and its
``install-service`` writes a unit that systemd accepts.

The venv gets its dependencies by pip's ordinary resolution (from pip's cache when it has them): that is
what proves ``[project.dependencies]`` complete, which a venv borrowing the development packages could not.
The wheel is built with build isolation (the pinned setuptools of ``[build-system]``), as ``pip install``
on a board would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import simkit

REPO = Path(__file__).resolve().parents[3]
FLAVOUR = "1.2.3"
pytestmark = [pytest.mark.install, pytest.mark.timeout(600)]


def run(*cmd: str | Path, cwd: Path) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=500)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the repository with the wheel built from it, installed as a user would."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip = (sys.executable, "-m", "pip")
    run(*pip, "wheel", REPO, "--no-deps", "--quiet", "--wheel-dir", tmp / "dist", cwd=tmp)
    (wheel,) = (tmp / "dist").glob("rkio-*.whl")
    run(sys.executable, "-m", "venv", "--without-pip", tmp / "venv", cwd=tmp)
    run(*pip, "--python", tmp / "venv" / "bin" / "python", "install", "--quiet", wheel, cwd=tmp)
    return tmp / "venv"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing pointing into the repository (with the repository's
    ``src`` on PYTHONPATH, pip would even take rkio for installed already)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RKIO_CONFIG", "VIRTUAL_ENV")}
    return {**env, **extra}


def test_the_installed_wheel_serves_a_model_from_outside_the_repository(venv: Path, tmp_path: Path) -> None:
    python = venv / "bin" / "python"
    where = subprocess.run([python, "-c", "import rkio, sys; print(rkio.__file__); print(sys.prefix)"],
                           cwd=tmp_path, env=clean_env(), capture_output=True, text=True, check=True)
    assert where.stdout.splitlines()[0].startswith(str(venv))  # not the repository's src/
    assert subprocess.run([python, "-c", "import simkit"], cwd=tmp_path, env=clean_env(),
                          capture_output=True).returncode != 0  # no test helpers in the install

    simkit.make_model(tmp_path / "models" / "tiny" / "tiny.rkllm", 16 << 20)
    port = str(free_port())
    env = clean_env(RKIO_RKLLM_LIB=str(simkit.sim_library(FLAVOUR)), RKIO_RKLLM_ABI=FLAVOUR,
                    RKIO_HOME=str(tmp_path / "home"), RKLLM_SIM_STATE=str(tmp_path / "sim-state"),
                    RKLLM_SIM_TOKEN_US="0", RKLLM_SIM_PREFILL_US="0", RKLLM_SIM_INIT_MS="0")
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([venv / "bin" / "rkio", "serve", "--port", port, "--models-dir",
                               tmp_path / "models", "--runtime", "rkllm", "--memory-budget", "1GiB",
                               "--npu-lock", tmp_path / "npu.lock", "--board-name", "wheel-board"],
                              cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                health = httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.1)
        assert health.json() == {"status": "ok"} and health.headers["x-rkio-board"] == "wheel-board"
        assert httpx.get(url + "/ready").json()["status"] == "ready"
        reply = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "model": "tiny", "messages": [{"role": "user", "content": "red green [[n=4]]"}]})
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"].split() == ["red", "green", "red", "green"]
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0, (tmp_path / "serve.log").read_text()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_the_installed_wheel_writes_a_unit_systemd_accepts(venv: Path, tmp_path: Path) -> None:
    out = run(venv / "bin" / "rkio", "install-service", "--root", tmp_path / "root", cwd=tmp_path)
    unit = tmp_path / "root" / "etc" / "systemd" / "system" / "rkio.service"
    assert f"wrote {unit}" in out
    exec_start = f"ExecStart={venv / 'bin' / 'python'} -m rkio serve --config /etc/rkio/config.toml"
    assert exec_start in unit.read_text()
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the unit was written but not verified")
    verify = subprocess.run([analyze, "verify", unit], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys and bad values too; it prints them, naming the file
    complaints = [line for line in (verify.stdout + verify.stderr).splitlines() if str(unit) in line]
    assert verify.returncode == 0 and complaints == [], verify.stdout + verify.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
