"""``rkio install-service`` into a temporary root, and doctor's checks of an installed service."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pytest

from rkio.cli import service_check
from rkio.cli.service import CONFIG_PATH, STATE_PATH, UNIT_PATH, Installer, cmd_install_service
from rkio.config import Settings


def unit_keys(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_install_writes_the_unit_config_and_state_under_the_root(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(root=str(tmp_path), user="rkio", python="/opt/rkio/bin/python")
    assert cmd_install_service(args) == 0
    keys = unit_keys((tmp_path / UNIT_PATH).read_text())
    assert keys["ExecStart"] == "/opt/rkio/bin/python -m rkio serve --config /etc/rkio/config.toml"
    assert (keys["User"], keys["Restart"], keys["StateDirectory"]) == ("rkio", "on-failure", "rkio")
    assert keys["Environment"] == "RKIO_HOME=/var/lib/rkio"
    settings = Settings.load(tmp_path / CONFIG_PATH)  # the shipped config is valid as it is
    assert settings.models_dir == Path("/var/lib/rkio/models") and settings.host == "127.0.0.1"
    assert settings.npu_lock == Path("/run/lock/rkio-npu.lock")
    assert (tmp_path / STATE_PATH / "models").is_dir() and (tmp_path / STATE_PATH / "state").is_dir()
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / UNIT_PATH}" in out and "systemctl enable --now rkio" in out


def test_reinstalling_rewrites_the_unit_but_keeps_the_users_config(tmp_path: Path) -> None:
    Installer(tmp_path, "/usr/bin/python3").run()
    config = tmp_path / CONFIG_PATH
    config.write_text('host = "0.0.0.0"\napi_key = "k"\n')
    done = Installer(tmp_path, "/opt/new/bin/python").run()
    assert config.read_text() == 'host = "0.0.0.0"\napi_key = "k"\n'
    assert f"kept {config} (already there)" in done
    assert "/opt/new/bin/python -m rkio" in (tmp_path / UNIT_PATH).read_text()


def test_install_on_the_real_system_needs_root(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cmd_install_service(argparse.Namespace(root="/", user="rkio", python=None)) == 1
    assert "run it as root" in capsys.readouterr().err


def test_doctor_reports_a_broken_service(tmp_path: Path) -> None:
    assert service_check.check_service(tmp_path) == (None, [])  # nothing installed: nothing to say
    Installer(tmp_path, "/nonexistent/python", user="no-such-user-rkio").run()
    (tmp_path / CONFIG_PATH).write_text("port = 99999\n")
    summary, found = service_check.check_service(tmp_path)
    assert summary is not None and summary["user"] == "no-such-user-rkio"
    problems = [problem for _, problem, _ in found]
    assert "the service's interpreter /nonexistent/python does not exist" in problems
    assert any(p.startswith("the service's config: invalid setting: TOML key port=99999") for p in problems)
    assert "the service's user no-such-user-rkio does not exist" in problems


def test_doctor_says_which_npu_groups_the_service_user_lacks(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import pwd

    me = pwd.getpwuid(os.getuid()).pw_name
    Installer(tmp_path, sys.executable, user=me).run()
    monkeypatch.setattr(service_check, "npu_groups", lambda root: ["no-such-group-render"])
    _, found = service_check.check_service(tmp_path)
    assert ("error", f"the service's user {me} is not in no-such-group-render: it cannot open the NPU",
            f"sudo usermod -aG no-such-group-render {me}") in found
    monkeypatch.setattr(service_check, "npu_groups", lambda root: [])
    assert [f for f in service_check.check_service(tmp_path)[1] if f[0] == "error"] == []
