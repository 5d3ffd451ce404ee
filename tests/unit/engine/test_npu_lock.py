"""The machine-wide NPU lock: one holder at a time, a dead holder's file is taken over, released on exit."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rkio.engine import npu_lock
from rkio.engine.npu_lock import default_lock_path, hold_npu_lock
from rkio.errors import NpuBusy


def test_a_second_holder_is_refused_with_the_owners_pid(tmp_path: Path) -> None:
    path = tmp_path / "npu.lock"
    with hold_npu_lock(path) as held:
        assert held == path and path.read_text().strip() == str(os.getpid())
        # flock conflicts between two opens of the file even within one process, as between two engines
        with pytest.raises(NpuBusy) as raised, hold_npu_lock(path):
            pass
        assert raised.value.holder == os.getpid()
        assert str(raised.value) == (f"another rkio engine (pid {os.getpid()}) already owns this machine's "
                                     f"NPU (lock file {path})")


def test_released_on_exit_and_retakeable(tmp_path: Path) -> None:
    path = tmp_path / "npu.lock"
    with hold_npu_lock(path):
        pass
    assert path.read_text() == ""  # no pid left behind to mislead
    with hold_npu_lock(path):
        assert path.read_text().strip() == str(os.getpid())


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "npu.lock"
    path.write_text("999999999\n")  # above Linux's largest pid_max: no such process (a killed server's
    # lock is covered by the e2e tests: the kernel drops the flock of a dead process)
    with hold_npu_lock(path):
        assert path.read_text().strip() == str(os.getpid())


def test_an_unreadable_pid_still_refuses(tmp_path: Path) -> None:
    path = tmp_path / "npu.lock"
    with hold_npu_lock(path):
        path.write_text("garbage")
        with pytest.raises(NpuBusy, match=r"\(pid unknown\)"), hold_npu_lock(path):
            pass


def test_default_path_prefers_a_writable_system_lock_dir(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    writable, readonly = tmp_path / "lock", tmp_path / "ro"
    writable.mkdir()
    readonly.mkdir(mode=0o500)
    monkeypatch.setattr(npu_lock, "SYSTEM_DIRS", (tmp_path / "absent", writable))
    assert default_lock_path() == writable / "rkio-npu.lock"
    if os.geteuid() != 0:  # root may write anywhere
        monkeypatch.setattr(npu_lock, "SYSTEM_DIRS", (readonly,))
        assert default_lock_path().parent != readonly
    monkeypatch.setattr(npu_lock, "SYSTEM_DIRS", (tmp_path / "absent",))
    monkeypatch.setattr(npu_lock.tempfile, "gettempdir", lambda: str(tmp_path))
    assert default_lock_path() == tmp_path / "rkio-npu.lock"


def test_probe_on_the_npu_refuses_while_a_server_owns_it(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from rkio.cli.main import main

    path = tmp_path / "npu.lock"
    model = tmp_path / "m.rkllm"
    model.write_bytes(b"x")
    with hold_npu_lock(path):
        assert main(["probe", "--npu-lock", str(path), "--out", str(tmp_path / "out"), str(model)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"rkio probe: another rkio engine (pid {os.getpid()}) already owns this "
                           f"machine's NPU (lock file {path})")
    assert not (tmp_path / "out").exists()
